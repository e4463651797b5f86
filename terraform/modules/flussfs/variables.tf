# Inputs of the flussfs module. terraform/README.md has the same list as a table, with the
# reasoning behind each default.

variable "name" {
  description = "Prefix of every named resource (roles, functions, queue, schedule, alarms, log groups)."
  type        = string
  default     = "flussfs"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.name))
    error_message = "name: 1-31 characters of lowercase letters, digits and '-' (it prefixes role names, which are limited to 64 characters)."
  }
}

variable "bucket_name" {
  description = "Name of the S3 general purpose bucket the module creates for the tables."
  type        = string
}

variable "table_prefixes" {
  description = "Table roots inside the bucket, e.g. [\"tables/orders\"]; \"\" is a table at the bucket root. IAM policies and the compactor's schedule are scoped to these."
  type        = list(string)

  validation {
    condition     = length(var.table_prefixes) >= 1 && length(var.table_prefixes) <= 900
    error_message = "table_prefixes: between 1 and 900 tables (each adds one lifecycle rule; a bucket holds at most 1,000)."
  }
  validation {
    # IAM and lifecycle rules would read '*' and '?' as wildcards; '//' and a leading '/' make keys
    # that no flussfs client builds.
    condition     = alltrue([for p in var.table_prefixes : can(regex("^([A-Za-z0-9._=-]+(/[A-Za-z0-9._=-]+)*)?/?$", p))])
    error_message = "table_prefixes: relative key prefixes of letters, digits and . _ = - separated by single '/', without wildcards or a leading '/'."
  }
}

variable "kms_key_arn" {
  description = "ARN of a KMS key for SSE-KMS (with an S3 Bucket Key). null keeps SSE-S3. Every role gets kms:Decrypt, writers and the compactor also kms:GenerateDataKey; the key policy must allow the account's IAM policies to grant that."
  type        = string
  default     = null
}

variable "gc_recovery_days" {
  description = "Days a version that the garbage collector deleted (or a hint overwrote) stays recoverable before lifecycle removes it for good."
  type        = number
  default     = 7

  validation {
    condition     = var.gc_recovery_days >= 1
    error_message = "gc_recovery_days must be at least 1."
  }
}

variable "batch_receipt_days" {
  description = "Days the Lambda writer's idempotency receipts (_flussfs/batches/) are kept. Must exceed SQS's longest message retention (14 days), or a redelivered batch could be written twice."
  type        = number
  default     = 15

  validation {
    condition     = var.batch_receipt_days > 14
    error_message = "batch_receipt_days must exceed 14, SQS's maximum message retention."
  }
}

variable "writers_may_create_tables" {
  description = "Whether the writer role may put table metadata (_flussfs/table/), i.e. create tables. Off: an operator creates tables once."
  type        = bool
  default     = false
}

variable "writer_sqs_queue_arns" {
  description = "SQS queues that trigger the Lambda writer; its role may receive and delete their messages."
  type        = list(string)
  default     = []
}

variable "writer_kinesis_stream_arns" {
  description = "Kinesis streams that trigger the Lambda writer; its role may read them."
  type        = list(string)
  default     = []
}

variable "writer_extra_principal_arns" {
  description = "IAM principals (outside Lambda) that may assume the writer role."
  type        = list(string)
  default     = []
}

variable "reader_extra_principal_arns" {
  description = "IAM principals (outside Lambda) that may assume the reader role."
  type        = list(string)
  default     = []
}

variable "package_type" {
  description = "How the compactor is deployed: \"Zip\" (the artifact of `make lambda-package`, uploaded to artifacts_bucket) or \"Image\" (image_uri). terraform/lambda/README.md says which fits."
  type        = string
  default     = "Zip"

  validation {
    condition     = contains(["Zip", "Image"], var.package_type)
    error_message = "package_type must be \"Zip\" or \"Image\"."
  }
}

variable "lambda_zip_path" {
  description = "Local path of build/lambda/flussfs-lambda.zip (package_type \"Zip\")."
  type        = string
  default     = null
}

variable "artifacts_bucket" {
  description = "Existing bucket the zip is uploaded to (package_type \"Zip\"): the artifact exceeds Lambda's 50 MB direct-upload limit."
  type        = string
  default     = null
}

variable "artifacts_prefix" {
  description = "Key prefix of the uploaded zip in artifacts_bucket."
  type        = string
  default     = "flussfs/lambda/"
}

variable "image_uri" {
  description = "ECR image URI of the compactor (package_type \"Image\")."
  type        = string
  default     = null
}

variable "compactor_memory_mb" {
  description = "Memory of the compactor and fan-out worker functions (CPU scales with it)."
  type        = number
  default     = 3008
}

variable "compactor_timeout_s" {
  description = "Timeout of the compactor and fan-out worker functions."
  type        = number
  default     = 900

  validation {
    condition     = var.compactor_timeout_s >= 60 && var.compactor_timeout_s <= 900
    error_message = "compactor_timeout_s must be between 60 and 900 (Lambda's maximum)."
  }
}

variable "fanout" {
  description = "Whether the compactor fans bucket tasks out to a worker function (FLUSSFS_WORKER_FUNCTION), spilling large payloads under _flussfs_fanout/."
  type        = bool
  default     = false
}

variable "fanout_concurrency_max" {
  description = "Reserved concurrency of the fan-out worker: the most bucket tasks that run at once."
  type        = number
  default     = 32

  validation {
    condition     = var.fanout_concurrency_max >= 1
    error_message = "fanout_concurrency_max must be at least 1."
  }
}

variable "compaction_schedule" {
  description = "EventBridge Scheduler expression that starts a compaction of every table."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.compaction_schedule))
    error_message = "compaction_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "compaction_lag_alarm_s" {
  description = "Alarm when a table's CompactionLagSeconds (the age of its oldest commit no snapshot covers) exceeds this."
  type        = number
  default     = 1800
}

variable "alarm_sns_topic_arn" {
  description = "SNS topic notified when an alarm fires or clears; null: alarms only show in CloudWatch."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the functions' CloudWatch log groups."
  type        = number
  default     = 365
}

variable "glue_database" {
  description = "Name of a Glue database to create and register the tables' Iceberg metadata in; null: no Glue."
  type        = string
  default     = null
}

variable "express_availability_zone_id" {
  description = "AZ ID (e.g. use1-az4) of an S3 Express One Zone directory bucket for latency-critical tables; null: none. See terraform/README.md for what does not carry over."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource that takes them."
  type        = map(string)
  default     = {}
}

# ---- The Lambda writer (optional) -----------------------------------------------------------

variable "writer_table_uri" {
  description = "Table (s3://bucket/prefix, under one of table_prefixes) that the Lambda writer fills from writer_sqs_queue_arns and writer_kinesis_stream_arns. null: no writer function (the writer role is still created)."
  type        = string
  default     = null
}

variable "writer_memory_mb" {
  description = "Memory of the writer function (MB); CPU grows with it."
  type        = number
  default     = 1024
}

variable "writer_timeout_s" {
  description = "Timeout of the writer function (s). SQS queues that trigger it need a visibility timeout of at least six times this."
  type        = number
  default     = 60
}

variable "writer_concurrency_max" {
  description = "Reserved concurrency of the writer function: at most this many concurrent commits to the table."
  type        = number
  default     = 10
}

variable "writer_batch_size" {
  description = "Records per writer invocation (one commit per bucket per invocation)."
  type        = number
  default     = 500
}

variable "writer_batching_window_s" {
  description = "Seconds Lambda gathers records before invoking the writer: fewer, larger commits for that much latency."
  type        = number
  default     = 1
}

variable "writer_kinesis_retry_attempts" {
  description = "Retries of a Kinesis batch whose first record keeps failing before it goes to the DLQ."
  type        = number
  default     = 10
}
