# One role per job, each scoped to the table prefixes (key patterns in main.tf).
#
# Invariants:
# - No statement has a "*" or "service:*" action or a bare "*" resource. The one exception is
#   the AWS-managed AWSXRayDaemonWriteAccess attached to the compactor role: X-Ray's
#   PutTraceSegments and PutTelemetryRecords support no resource-level permissions, and Lambda
#   refuses active tracing without them.
# - The writer never deletes; the reader only reads and lists; the compactor deletes only what
#   garbage collection and a lost publication race remove (spec 20.6, 20.7).
# - s3:ListBucket is granted with an s3:prefix condition: it is what turns a GET of a missing key
#   into 404 instead of 403 (spec 12.2), and S3 checks it with the object key as the prefix.

# ---- Trust policies -------------------------------------------------------------------------

data "aws_iam_policy_document" "lambda_trust" {
  statement {
    sid     = "LambdaAssumesRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "writer_trust" {
  source_policy_documents = [data.aws_iam_policy_document.lambda_trust.json]

  dynamic "statement" {
    for_each = length(var.writer_extra_principal_arns) > 0 ? [1] : []
    content {
      sid     = "ExtraPrincipalsAssumeRole"
      actions = ["sts:AssumeRole"]

      principals {
        type        = "AWS"
        identifiers = var.writer_extra_principal_arns
      }
    }
  }
}

data "aws_iam_policy_document" "reader_trust" {
  source_policy_documents = [data.aws_iam_policy_document.lambda_trust.json]

  dynamic "statement" {
    for_each = length(var.reader_extra_principal_arns) > 0 ? [1] : []
    content {
      sid     = "ExtraPrincipalsAssumeRole"
      actions = ["sts:AssumeRole"]

      principals {
        type        = "AWS"
        identifiers = var.reader_extra_principal_arns
      }
    }
  }
}

data "aws_iam_policy_document" "scheduler_trust" {
  statement {
    sid     = "SchedulerAssumesRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    # Confused-deputy guard: only schedules of this account may use the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---- Writer ---------------------------------------------------------------------------------

data "aws_iam_policy_document" "writer" {
  statement {
    sid = "WriteLog"
    # AbortMultipartUpload: a multipart upload whose conditional completion fails MUST be
    # aborted (spec 12.2).
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = local.writer_put_arns
  }

  dynamic "statement" {
    for_each = local.writer_enabled ? [1] : []
    content {
      sid       = "KeepRejects"
      actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
      resources = local.writer_rejects_arns
    }
  }

  dynamic "statement" {
    for_each = var.writers_may_create_tables ? [1] : []
    content {
      sid       = "CreateTables"
      actions   = ["s3:PutObject"]
      resources = local.writer_create_table_arns
    }
  }

  statement {
    sid       = "ReadLog"
    actions   = ["s3:GetObject"]
    resources = local.writer_read_arns
  }

  statement {
    sid       = "ListLog"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.writer_list_prefixes
    }
  }

  dynamic "statement" {
    for_each = length(var.writer_sqs_queue_arns) > 0 ? [1] : []
    content {
      sid       = "ReadTriggerQueues"
      actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
      resources = var.writer_sqs_queue_arns
    }
  }

  dynamic "statement" {
    for_each = length(var.writer_kinesis_stream_arns) > 0 ? [1] : []
    content {
      sid = "ReadTriggerStreams"
      actions = [
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
        "kinesis:SubscribeToShard",
      ]
      resources = concat(var.writer_kinesis_stream_arns, [for s in var.writer_kinesis_stream_arns : "${s}/consumer/*"])
    }
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.writer.arn}:*"]
  }

  dynamic "statement" {
    for_each = local.writer_enabled && length(var.writer_kinesis_stream_arns) > 0 ? [1] : []
    content {
      # The Kinesis mappings' on-failure destination is sent to with the function's role.
      sid       = "SendFailedBatchesToDlq"
      actions   = ["sqs:SendMessage"]
      resources = [aws_sqs_queue.dlq.arn]
    }
  }

  dynamic "statement" {
    for_each = local.kms_enabled ? [1] : []
    content {
      sid       = "UseTableKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }

  dynamic "statement" {
    for_each = local.express_enabled ? [1] : []
    content {
      # Directory buckets authorize per session, not per key: a ReadWrite session reaches
      # every key of the directory bucket.
      sid       = "ExpressReadWriteSessions"
      actions   = ["s3express:CreateSession"]
      resources = [aws_s3_directory_bucket.express[0].arn]
    }
  }
}

resource "aws_iam_role" "writer" {
  name               = "${var.name}-writer"
  description        = "flussfs writer: appends to the logs of the tables under ${var.bucket_name}."
  assume_role_policy = data.aws_iam_policy_document.writer_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "writer" {
  name   = "flussfs-writer"
  role   = aws_iam_role.writer.id
  policy = data.aws_iam_policy_document.writer.json
}

resource "aws_cloudwatch_log_group" "writer" {
  #checkov:skip=CKV_AWS_158:Log lines carry table URIs and counters, no table data; CloudWatch Logs encrypts them at rest, and a customer key would need a key policy for the logs service, which this module does not own.
  name              = local.writer_log_group
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

# ---- Reader ---------------------------------------------------------------------------------

data "aws_iam_policy_document" "reader" {
  statement {
    sid       = "ReadTables"
    actions   = ["s3:GetObject"]
    resources = local.table_read_arns
  }

  statement {
    sid       = "ListTables"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.table_list_prefixes
    }
  }

  dynamic "statement" {
    for_each = local.kms_enabled ? [1] : []
    content {
      sid       = "DecryptWithTableKey"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }

  dynamic "statement" {
    for_each = local.express_enabled ? [1] : []
    content {
      sid       = "ExpressReadOnlySessions"
      actions   = ["s3express:CreateSession"]
      resources = [aws_s3_directory_bucket.express[0].arn]

      condition {
        test     = "StringEquals"
        variable = "s3express:SessionMode"
        values   = ["ReadOnly"]
      }
    }
  }
}

resource "aws_iam_role" "reader" {
  name               = "${var.name}-reader"
  description        = "flussfs reader: reads the tables under ${var.bucket_name}."
  assume_role_policy = data.aws_iam_policy_document.reader_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "reader" {
  name   = "flussfs-reader"
  role   = aws_iam_role.reader.id
  policy = data.aws_iam_policy_document.reader.json
}

# ---- Compactor (and its fan-out worker, which runs as the same role) ------------------------

data "aws_iam_policy_document" "compactor" {
  statement {
    sid       = "ReadTables"
    actions   = ["s3:GetObject"]
    resources = local.table_read_arns
  }

  statement {
    sid       = "ListTables"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.compactor_list_prefixes
    }
  }

  statement {
    sid       = "WriteSnapshotsAndIceberg"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = local.compactor_put_arns
  }

  statement {
    sid       = "CollectGarbage"
    actions   = ["s3:DeleteObject"]
    resources = local.compactor_delete_arns
  }

  dynamic "statement" {
    for_each = var.fanout ? [1] : []
    content {
      sid       = "FanoutSpill"
      actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
      resources = local.fanout_spill_arns
    }
  }

  dynamic "statement" {
    for_each = var.fanout ? [1] : []
    content {
      sid       = "InvokeWorker"
      actions   = ["lambda:InvokeFunction"]
      resources = [local.worker_function_arn]
    }
  }

  statement {
    sid       = "SendToDeadLetterQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }

  statement {
    sid     = "WriteOwnLogs"
    actions = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = concat(
      ["${aws_cloudwatch_log_group.compactor.arn}:*"],
      [for g in aws_cloudwatch_log_group.worker : "${g.arn}:*"],
    )
  }

  dynamic "statement" {
    for_each = local.kms_enabled ? [1] : []
    content {
      sid       = "UseTableKey"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }

  dynamic "statement" {
    for_each = local.glue_enabled ? [1] : []
    content {
      sid       = "RegisterInGlue"
      actions   = ["glue:GetDatabase", "glue:GetTable", "glue:CreateTable", "glue:UpdateTable"]
      resources = local.glue_arns
    }
  }

  dynamic "statement" {
    for_each = local.express_enabled ? [1] : []
    content {
      sid       = "ExpressReadWriteSessions"
      actions   = ["s3express:CreateSession"]
      resources = [aws_s3_directory_bucket.express[0].arn]
    }
  }
}

resource "aws_iam_role" "compactor" {
  name               = "${var.name}-compactor"
  description        = "flussfs compactor: snapshots, Iceberg publication and garbage collection of the tables under ${var.bucket_name}."
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "compactor" {
  name   = "flussfs-compactor"
  role   = aws_iam_role.compactor.id
  policy = data.aws_iam_policy_document.compactor.json
}

resource "aws_iam_role_policy_attachment" "compactor_xray" {
  role       = aws_iam_role.compactor.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

# ---- Scheduler ------------------------------------------------------------------------------

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeCompactor"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.compactor.arn]
  }

  # EventBridge Scheduler delivers dead-letter events with the schedule's execution role.
  statement {
    sid       = "SendToDeadLetterQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-scheduler"
  description        = "EventBridge Scheduler: starts the flussfs compactor."
  assume_role_policy = data.aws_iam_policy_document.scheduler_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "flussfs-scheduler"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
