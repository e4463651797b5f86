# ---- The Lambda writer (optional) ------------------------------------------------------------
# flussfs.serverless.writer.handler appends (log table) or upserts (primary-key table) the JSON
# records of SQS or Kinesis trigger events into one table, exactly once per delivery: each event
# is one batch whose id names its records (format_spec 13.7), so Lambda's retries of an event
# commit nothing twice. Records that cannot become rows are kept whole under
# s3://<bucket>/_flussfs_rejects/ (FLUSSFS_REJECTS_URI) and the rest commit, so a poison record
# neither holds up a Kinesis shard nor returns to an SQS queue. Should the handler report
# batchItemFailures (without rejects), the mappings below honour them; Kinesis must not bisect a
# failing batch, since a half batch is a new batch id.

resource "aws_lambda_function" "writer" {
  count = local.writer_enabled ? 1 : 0
  #checkov:skip=CKV_AWS_117:The function talks only to S3, SQS/Kinesis and CloudWatch over TLS; a VPC would add NAT or endpoints and cold-start cost without narrowing that.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile and a signed artifact, which `make lambda-package` does not produce.
  #checkov:skip=CKV_AWS_173:The environment holds a table URI, no secrets; Lambda encrypts it at rest with an AWS-managed key.
  #checkov:skip=CKV_AWS_116:Only event source mappings invoke it: failed SQS messages go to the queue's own redrive DLQ, failed Kinesis batches to the mapping's on-failure destination; a function DLQ serves asynchronous invocations only.
  depends_on = [
    aws_iam_role_policy.writer,
    aws_iam_role_policy_attachment.writer_xray,
    aws_cloudwatch_log_group.writer,
  ]

  function_name = local.writer_function
  description   = "flussfs writer: SQS/Kinesis records into ${var.writer_table_uri}, exactly once per delivery."
  role          = aws_iam_role.writer.arn
  package_type  = var.package_type
  architectures = ["x86_64"]

  handler          = local.is_zip ? local.writer_handler : null
  runtime          = local.is_zip ? "python3.12" : null
  s3_bucket        = local.is_zip ? var.artifacts_bucket : null
  s3_key           = local.is_zip ? aws_s3_object.lambda_zip[0].key : null
  source_code_hash = local.is_zip ? filebase64sha256(var.lambda_zip_path) : null
  image_uri        = local.is_zip ? null : var.image_uri

  dynamic "image_config" {
    for_each = local.is_zip ? [] : [1]
    content {
      command = [local.writer_handler]
    }
  }

  memory_size                    = var.writer_memory_mb
  timeout                        = var.writer_timeout_s
  reserved_concurrent_executions = var.writer_concurrency_max

  environment {
    variables = {
      FLUSSFS_TABLE       = var.writer_table_uri
      FLUSSFS_REJECTS_URI = local.writer_rejects_uri
    }
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.writer.name
  }

  tags = var.tags

  lifecycle {
    precondition {
      # The rejects prefix and the IAM grants are derived from the table's key in this bucket.
      condition     = startswith(var.writer_table_uri, "s3://${var.bucket_name}/") || var.writer_table_uri == "s3://${var.bucket_name}"
      error_message = "writer_table_uri must be s3://<bucket_name> or s3://<bucket_name>/<table prefix>."
    }
  }
}

resource "aws_iam_role_policy_attachment" "writer_xray" {
  count      = local.writer_enabled ? 1 : 0
  role       = aws_iam_role.writer.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_lambda_event_source_mapping" "writer_sqs" {
  for_each = local.writer_enabled ? toset(var.writer_sqs_queue_arns) : toset([])

  event_source_arn                   = each.value
  function_name                      = aws_lambda_function.writer[0].arn
  batch_size                         = var.writer_batch_size
  maximum_batching_window_in_seconds = var.writer_batching_window_s
  function_response_types            = ["ReportBatchItemFailures"]
}

resource "aws_lambda_event_source_mapping" "writer_kinesis" {
  for_each = local.writer_enabled ? toset(var.writer_kinesis_stream_arns) : toset([])

  event_source_arn                   = each.value
  function_name                      = aws_lambda_function.writer[0].arn
  starting_position                  = "TRIM_HORIZON"
  batch_size                         = var.writer_batch_size
  maximum_batching_window_in_seconds = var.writer_batching_window_s
  function_response_types            = ["ReportBatchItemFailures"]
  # One batch at a time per shard, resent whole on a retry: the same records, the same batch id.
  parallelization_factor         = 1
  bisect_batch_on_function_error = false
  # A record that stays bad is given up after this many retries and sent to the DLQ, so one
  # poison record cannot stall its shard until the stream's retention drops it.
  maximum_retry_attempts = var.writer_kinesis_retry_attempts

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.dlq.arn
    }
  }
}
