# Names and key patterns shared by the bucket policy, the IAM policies and the compactor.
#
# Invariants:
# - Every key pattern here is relative to a table root T and follows format_spec/spec-v1.md,
#   section 2 ("Layout"). IAM's '*' matches any characters, '/' included.
# - A table root is "" (a table at the bucket root) or ends in exactly one '/'.
# - Job policies name no bare "*" resource and no "*" or "service:*" action.

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id

  bucket_arn = "arn:${local.partition}:s3:::${var.bucket_name}"

  # "tables/orders/" -> table root "tables/orders/" and URI "s3://<bucket>/tables/orders".
  table_prefixes = [for p in var.table_prefixes : trim(p, "/")]
  table_roots    = [for p in local.table_prefixes : p == "" ? "" : "${p}/"]
  table_uris     = { for p in local.table_prefixes : p => (p == "" ? "s3://${var.bucket_name}" : "s3://${var.bucket_name}/${p}") }

  # Fan-out spill objects live outside every table.
  fanout_prefix    = "_flussfs_fanout/"
  fanout_spill_uri = "s3://${var.bucket_name}/${local.fanout_prefix}"

  # Records the Lambda writer cannot turn into rows, kept whole, beside the tables' own keys:
  # s3://<bucket>/_flussfs_rejects/<table prefix>/<source>/<queue or stream>/[<shard>/]<id>.json.
  rejects_prefix     = "_flussfs_rejects/"
  writer_table_key   = local.writer_enabled ? trim(trimprefix(var.writer_table_uri, "s3://${var.bucket_name}"), "/") : ""
  writer_rejects_uri = local.writer_enabled ? "s3://${var.bucket_name}/${local.rejects_prefix}${local.writer_table_key}" : null

  # ---- Bucket policy (whole bucket, so tables created later are covered too) ----------------
  # Objects that are only ever created with put-if-absent. The leading '*' matches any table
  # root, the empty one included.
  immutable_object_patterns = [
    "*_flussfs/table/*",
    "*_flussfs/log/*/commits/*",
    "*_flussfs/log/*/segments/*",
    "*_flussfs/log/*/checkpoints/*",
    "*_flussfs/snapshots/*",
    "*_flussfs/batches/*",
    "*metadata/*.metadata.json",
    "_flussfs_rejects/*",
  ]
  immutable_object_arns = [for p in local.immutable_object_patterns : "${local.bucket_arn}/${p}"]

  # Objects nothing in flussfs v1 ever deletes (spec sections 15 and 20.7).
  undeletable_object_patterns = [
    "*_flussfs/table/*",
    "*_flussfs/log/*/commits/*",
    "*metadata/*.metadata.json",
  ]
  undeletable_object_arns = [for p in local.undeletable_object_patterns : "${local.bucket_arn}/${p}"]

  # ---- Writer: the log of each table (spec sections 7-10 and 13) ---------------------------
  writer_put_patterns = [
    "_flussfs/log/*/commits/*",
    "_flussfs/log/*/segments/*",
    "_flussfs/log/*/checkpoints/*",
    "_flussfs/log/*/_last_checkpoint",
    "_flussfs/batches/*",
  ]
  writer_create_table_patterns = ["_flussfs/table/*"]
  writer_read_patterns         = ["_flussfs/*"]

  writer_put_arns          = [for p in setproduct(local.table_roots, local.writer_put_patterns) : "${local.bucket_arn}/${p[0]}${p[1]}"]
  writer_create_table_arns = [for p in setproduct(local.table_roots, local.writer_create_table_patterns) : "${local.bucket_arn}/${p[0]}${p[1]}"]
  writer_read_arns         = [for p in setproduct(local.table_roots, local.writer_read_patterns) : "${local.bucket_arn}/${p[0]}${p[1]}"]
  writer_list_prefixes     = [for p in setproduct(local.table_roots, local.writer_read_patterns) : "${p[0]}${p[1]}"]
  # Only the Lambda writer keeps rejects, and only under its own table's rejects prefix.
  writer_rejects_arns = local.writer_enabled ? ["${local.bucket_arn}/${local.rejects_prefix}${local.writer_table_key == "" ? "" : "${local.writer_table_key}/"}*"] : []

  # ---- Reader: everything under each table root -------------------------------------------
  table_read_patterns = ["*"]
  table_read_arns     = [for p in setproduct(local.table_roots, local.table_read_patterns) : "${local.bucket_arn}/${p[0]}${p[1]}"]
  table_list_prefixes = [for p in setproduct(local.table_roots, local.table_read_patterns) : "${p[0]}${p[1]}"]

  # ---- Compactor: snapshots, changelog and the Iceberg table (spec section 20) -------------
  compactor_put_patterns = [
    "_flussfs/snapshots/*",
    "_flussfs/changelog/*",
    "data/*",
    "metadata/*",
  ]
  # What the garbage collector (20.7) and a publication that lost its race (20.6) delete.
  compactor_delete_patterns = [
    "data/*",
    "_flussfs/changelog/*",
    "_flussfs/snapshots/*",
    "metadata/m-*",
    "metadata/snap-*",
  ]
  compactor_put_arns    = [for p in setproduct(local.table_roots, local.compactor_put_patterns) : "${local.bucket_arn}/${p[0]}${p[1]}"]
  compactor_delete_arns = [for p in setproduct(local.table_roots, local.compactor_delete_patterns) : "${local.bucket_arn}/${p[0]}${p[1]}"]
  fanout_spill_arns     = ["${local.bucket_arn}/${local.fanout_prefix}*"]
  compactor_list_prefixes = concat(local.table_list_prefixes, var.fanout ? ["${local.fanout_prefix}*"] : [])

  # ---- Functions ----------------------------------------------------------------------------
  is_zip                 = var.package_type == "Zip"
  compactor_handler      = "compactor.handler.compact_handler"
  worker_handler         = "compactor.handler.worker_handler"
  writer_handler         = "flussfs.serverless.writer.handler"
  writer_enabled         = var.writer_table_uri != null
  compactor_function     = "${var.name}-compactor"
  worker_function        = "${var.name}-compactor-worker"
  writer_function        = "${var.name}-writer"
  compactor_log_group    = "/aws/lambda/${local.compactor_function}"
  worker_log_group       = "/aws/lambda/${local.worker_function}"
  writer_log_group       = "/aws/lambda/${local.writer_function}"
  lambda_zip_key         = "${var.artifacts_prefix}flussfs-lambda.zip"
  compactor_function_arn = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${local.compactor_function}"
  worker_function_arn    = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${local.worker_function}"

  compactor_environment = merge(
    { FLUSSFS_TABLES = jsonencode([for p in local.table_prefixes : local.table_uris[p]]) },
    var.fanout ? {
      FLUSSFS_WORKER_FUNCTION  = local.worker_function
      FLUSSFS_FANOUT_SPILL_URI = local.fanout_spill_uri
      # As many invocations in flight as the worker's reserved concurrency: more are throttled.
      FLUSSFS_FANOUT_CONCURRENCY = tostring(var.fanout_concurrency_max)
    } : {},
    var.glue_database != null ? { FLUSSFS_GLUE_DATABASE = var.glue_database } : {},
  )

  # A queued asynchronous invocation older than this is dropped to the DLQ instead of run: with
  # reserved concurrency 1, scheduled runs that arrive while a compaction is still running wait
  # in Lambda's queue, and this bounds how many can pile up there.
  async_event_age_max_s = 1800

  # ---- Alarms -------------------------------------------------------------------------------
  # The lag alarm's period must cover at least one scheduled run, or a healthy compactor that
  # runs less often than the period would look like missing data (which breaches). Periods x
  # evaluation periods may not exceed a day.
  schedule_rate       = regexall("^rate\\((\\d+) (minutes?|hours?|days?)\\)$", var.compaction_schedule)
  schedule_unit_s     = { minute = 60, minutes = 60, hour = 3600, hours = 3600, day = 86400, days = 86400 }
  schedule_interval_s = length(local.schedule_rate) == 1 ? tonumber(local.schedule_rate[0][0]) * local.schedule_unit_s[local.schedule_rate[0][1]] : 900
  lag_alarm_periods   = 2
  lag_alarm_period_s  = min(max(900, local.schedule_interval_s), 43200)
  alarm_actions       = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]

  # ---- Optional parts -----------------------------------------------------------------------
  glue_enabled  = var.glue_database != null
  glue_arns = local.glue_enabled ? [
    "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog",
    "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/${var.glue_database}",
    "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${var.glue_database}/*",
  ] : []
  express_enabled = var.express_availability_zone_id != null
  express_bucket  = local.express_enabled ? "${var.bucket_name}--${var.express_availability_zone_id}--x-s3" : null
  kms_enabled     = var.kms_key_arn != null
}
