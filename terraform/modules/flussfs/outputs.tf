output "bucket_name" {
  description = "The tables' bucket."
  value       = aws_s3_bucket.tables.bucket
}

output "bucket_arn" {
  description = "ARN of the tables' bucket."
  value       = aws_s3_bucket.tables.arn
}

output "table_uris" {
  description = "Table URIs (s3://bucket/prefix) by table prefix, as the compactor and its alarms name them."
  value       = local.table_uris
}

output "writer_role_arn" {
  description = "Role for writers (the Lambda writer handler, or writer_extra_principal_arns)."
  value       = aws_iam_role.writer.arn
}

output "writer_log_group_name" {
  description = "Log group for a Lambda writer function named <name>-writer."
  value       = aws_cloudwatch_log_group.writer.name
}

output "reader_role_arn" {
  description = "Role for readers and subscribers."
  value       = aws_iam_role.reader.arn
}

output "compactor_role_arn" {
  description = "Role of the compactor and its fan-out worker."
  value       = aws_iam_role.compactor.arn
}

output "scheduler_role_arn" {
  description = "Role EventBridge Scheduler invokes the compactor with."
  value       = aws_iam_role.scheduler.arn
}

output "compactor_function_name" {
  description = "The compactor function."
  value       = aws_lambda_function.compactor.function_name
}

output "compactor_function_arn" {
  description = "ARN of the compactor function."
  value       = aws_lambda_function.compactor.arn
}

output "worker_function_name" {
  description = "The fan-out worker function (null without fanout)."
  value       = var.fanout ? aws_lambda_function.worker[0].function_name : null
}

output "worker_function_arn" {
  description = "ARN of the fan-out worker function (null without fanout)."
  value       = var.fanout ? aws_lambda_function.worker[0].arn : null
}

output "dlq_url" {
  description = "Dead-letter queue of the schedule and of the compactor's asynchronous invocations."
  value       = aws_sqs_queue.dlq.url
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "schedule_name" {
  description = "The EventBridge Scheduler schedule that starts compactions."
  value       = aws_scheduler_schedule.compaction.name
}

output "glue_database_name" {
  description = "The Glue database (null without glue_database)."
  value       = local.glue_enabled ? aws_glue_catalog_database.tables[0].name : null
}

output "express_bucket_name" {
  description = "The S3 Express One Zone directory bucket (null without express_availability_zone_id)."
  value       = local.express_enabled ? aws_s3_directory_bucket.express[0].bucket : null
}

output "express_bucket_arn" {
  description = "ARN of the directory bucket (null without express_availability_zone_id)."
  value       = local.express_enabled ? aws_s3_directory_bucket.express[0].arn : null
}

output "writer_function_name" {
  description = "The Lambda writer's function name (null when writer_table_uri is null)."
  value       = local.writer_enabled ? aws_lambda_function.writer[0].function_name : null
}
