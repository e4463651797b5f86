# The compactor as a scheduled Lambda function, its optional fan-out worker, the dead-letter
# queue and the alarms (format_spec/spec-v1.md, section 20).
#
# Invariants:
# - At most one compaction runs at a time (reserved concurrency 1): runs of one table never
#   pile up; the compactor is safe under concurrency anyway (20.4), this only saves work.
# - Every failure ends somewhere visible: a schedule that cannot invoke, an invocation that
#   fails or waits too long all land in the DLQ, and the DLQ and Errors alarms fire.
# - A compactor that stops running also stops reporting CompactionLagSeconds, and missing
#   data counts as breaching.

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-compactor-dlq"
  message_retention_seconds = 1209600 # 14 days, SQS's maximum
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_cloudwatch_log_group" "compactor" {
  #checkov:skip=CKV_AWS_158:Log lines carry table URIs and counters, no table data; CloudWatch Logs encrypts them at rest, and a customer key would need a key policy for the logs service, which this module does not own.
  name              = local.compactor_log_group
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "worker" {
  #checkov:skip=CKV_AWS_158:Log lines carry table URIs and counters, no table data; CloudWatch Logs encrypts them at rest, and a customer key would need a key policy for the logs service, which this module does not own.
  count             = var.fanout ? 1 : 0
  name              = local.worker_log_group
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# The zip is larger than Lambda's 50 MB direct-upload limit, so it goes through S3.
resource "aws_s3_object" "lambda_zip" {
  count       = local.is_zip ? 1 : 0
  bucket      = var.artifacts_bucket
  key         = local.lambda_zip_key
  source      = var.lambda_zip_path
  source_hash = filemd5(var.lambda_zip_path)
  tags        = var.tags
}

resource "aws_lambda_function" "compactor" {
  #checkov:skip=CKV_AWS_117:The function talks only to S3, Lambda, SQS, Glue and CloudWatch over TLS; a VPC would add NAT or endpoints and cold-start cost without narrowing that.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile and a signed artifact, which `make lambda-package` does not produce.
  #checkov:skip=CKV_AWS_173:The environment holds table URIs and a function name, no secrets; Lambda encrypts it at rest with an AWS-managed key.
  depends_on = [
    aws_iam_role_policy.compactor,
    aws_iam_role_policy_attachment.compactor_xray,
    aws_cloudwatch_log_group.compactor,
  ]

  function_name = local.compactor_function
  description   = "flussfs compactor: snapshots, Iceberg publication and GC of ${length(local.table_prefixes)} table(s)."
  role          = aws_iam_role.compactor.arn
  package_type  = var.package_type
  architectures = ["x86_64"]

  handler          = local.is_zip ? local.compactor_handler : null
  runtime          = local.is_zip ? "python3.12" : null
  s3_bucket        = local.is_zip ? var.artifacts_bucket : null
  s3_key           = local.is_zip ? aws_s3_object.lambda_zip[0].key : null
  source_code_hash = local.is_zip ? filebase64sha256(var.lambda_zip_path) : null
  image_uri        = local.is_zip ? null : var.image_uri

  dynamic "image_config" {
    for_each = local.is_zip ? [] : [1]
    content {
      command = [local.compactor_handler]
    }
  }

  memory_size                    = var.compactor_memory_mb
  timeout                        = var.compactor_timeout_s
  reserved_concurrent_executions = 1

  environment {
    variables = local.compactor_environment
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.compactor.name
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dlq.arn
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = local.is_zip ? (var.lambda_zip_path != null && var.artifacts_bucket != null) : var.image_uri != null
      error_message = "package_type \"Zip\" needs lambda_zip_path and artifacts_bucket; \"Image\" needs image_uri."
    }
  }
}

# The schedule is the retry: a failed run is not retried in place (the next scheduled run picks
# up where it stopped), and a run queued behind a long compaction is dropped after
# async_event_age_max_s rather than queued for hours.
resource "aws_lambda_function_event_invoke_config" "compactor" {
  function_name                = aws_lambda_function.compactor.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = local.async_event_age_max_s
}

resource "aws_lambda_function" "worker" {
  #checkov:skip=CKV_AWS_117:The function talks only to S3 and CloudWatch over TLS; a VPC would add NAT or endpoints and cold-start cost without narrowing that.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile and a signed artifact, which `make lambda-package` does not produce.
  #checkov:skip=CKV_AWS_173:The environment holds table URIs and a function name, no secrets; Lambda encrypts it at rest with an AWS-managed key.
  #checkov:skip=CKV_AWS_116:The compactor invokes the worker synchronously and handles its errors; a DLQ only receives asynchronous invocations.
  count = var.fanout ? 1 : 0
  depends_on = [
    aws_iam_role_policy.compactor,
    aws_iam_role_policy_attachment.compactor_xray,
    aws_cloudwatch_log_group.worker,
  ]

  function_name = local.worker_function
  description   = "flussfs compactor fan-out worker: one bucket task per invocation."
  role          = aws_iam_role.compactor.arn
  package_type  = var.package_type
  architectures = ["x86_64"]

  handler          = local.is_zip ? local.worker_handler : null
  runtime          = local.is_zip ? "python3.12" : null
  s3_bucket        = local.is_zip ? var.artifacts_bucket : null
  s3_key           = local.is_zip ? aws_s3_object.lambda_zip[0].key : null
  source_code_hash = local.is_zip ? filebase64sha256(var.lambda_zip_path) : null
  image_uri        = local.is_zip ? null : var.image_uri

  dynamic "image_config" {
    for_each = local.is_zip ? [] : [1]
    content {
      command = [local.worker_handler]
    }
  }

  memory_size                    = var.compactor_memory_mb
  timeout                        = var.compactor_timeout_s
  reserved_concurrent_executions = var.fanout_concurrency_max

  environment {
    variables = local.compactor_environment
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.worker[0].name
  }

  tags = var.tags
}

resource "aws_scheduler_schedule" "compaction" {
  #checkov:skip=CKV_AWS_297:The schedule's input is the list of table URIs, no secrets; EventBridge Scheduler encrypts it with an AWS-owned key.
  name                = "${var.name}-compaction"
  description         = "Starts a compaction of every flussfs table under ${var.bucket_name}."
  schedule_expression = var.compaction_schedule

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.compactor.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({ tables = [for p in local.table_prefixes : local.table_uris[p]] })

    # Retries cover throttling and transient errors of the Invoke call itself, not the
    # compaction (an asynchronous invoke succeeds once Lambda queued the event).
    retry_policy {
      maximum_event_age_in_seconds = 300
      maximum_retry_attempts       = 3
    }

    dead_letter_config {
      arn = aws_sqs_queue.dlq.arn
    }
  }
}

# ---- Alarms ---------------------------------------------------------------------------------

resource "aws_cloudwatch_metric_alarm" "compactor_errors" {
  alarm_name          = "${var.name}-compactor-errors"
  alarm_description   = "A flussfs compaction failed; its log group ${local.compactor_log_group} says why."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.compactor.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "worker_errors" {
  count               = var.fanout ? 1 : 0
  alarm_name          = "${var.name}-compactor-worker-errors"
  alarm_description   = "A flussfs fan-out task failed; its log group ${local.worker_log_group} says why."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.worker[0].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "dlq_messages" {
  alarm_name          = "${var.name}-compactor-dlq"
  alarm_description   = "A scheduled compaction could not be invoked, failed, or waited in Lambda's queue past ${local.async_event_age_max_s} s; the message in ${aws_sqs_queue.dlq.name} says which."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

# The compactor logs one CloudWatch Embedded Metric Format record per table and run: namespace
# "flussfs", metric CompactionLagSeconds, one dimension Table = the table URI as in
# FLUSSFS_TABLES. An alarm names one exact dimension set, hence one alarm per table.
resource "aws_cloudwatch_metric_alarm" "compaction_lag" {
  for_each            = local.table_uris
  alarm_name          = "${var.name}-compaction-lag/${each.key == "" ? "(bucket root)" : each.key}"
  alarm_description   = "${each.value}: commits older than ${var.compaction_lag_alarm_s} s are not compacted, or the compactor stopped reporting."
  namespace           = "flussfs"
  metric_name         = "CompactionLagSeconds"
  dimensions          = { Table = each.value }
  statistic           = "Maximum"
  period              = local.lag_alarm_period_s
  evaluation_periods  = local.lag_alarm_periods
  datapoints_to_alarm = local.lag_alarm_periods
  threshold           = var.compaction_lag_alarm_s
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}
