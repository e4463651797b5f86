# Two flussfs tables in one bucket, a scheduled compactor, and an SQS queue that feeds a Lambda
# writer. `make lambda-package` builds the zip first; terraform/README.md walks through it.

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "AWS region of every resource."
  type        = string
  default     = "us-east-1"
}

variable "bucket_name" {
  description = "Globally unique name of the tables' bucket."
  type        = string
}

variable "artifacts_bucket" {
  description = "Existing bucket for the Lambda zip."
  type        = string
}

variable "alarm_sns_topic_arn" {
  description = "SNS topic for alarms; null: none."
  type        = string
  default     = null
}

# Rows to write arrive here; a Lambda writer (event source mapping, role module.flussfs.writer_role_arn)
# appends them. Messages it cannot write go to writes_dlq after 5 receives.
resource "aws_sqs_queue" "writes_dlq" {
  name                      = "flussfs-example-writes-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "writes" {
  name                       = "flussfs-example-writes"
  message_retention_seconds  = 1209600
  visibility_timeout_seconds = 900
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.writes_dlq.arn
    maxReceiveCount     = 5
  })
}

module "flussfs" {
  source = "../../modules/flussfs"

  name           = "flussfs-example"
  bucket_name    = var.bucket_name
  table_prefixes = ["tables/orders", "tables/clicks"]

  writer_sqs_queue_arns = [aws_sqs_queue.writes.arn]
  writer_table_uri      = "s3://${var.bucket_name}/tables/orders"

  package_type     = "Zip"
  lambda_zip_path  = "${path.module}/../../../build/lambda/flussfs-lambda.zip"
  artifacts_bucket = var.artifacts_bucket
  fanout           = true

  alarm_sns_topic_arn = var.alarm_sns_topic_arn
}

output "bucket_name" {
  value = module.flussfs.bucket_name
}

output "table_uris" {
  value = module.flussfs.table_uris
}

output "writer_role_arn" {
  value = module.flussfs.writer_role_arn
}

output "reader_role_arn" {
  value = module.flussfs.reader_role_arn
}

output "compactor_function_name" {
  value = module.flussfs.compactor_function_name
}

output "dlq_url" {
  value = module.flussfs.dlq_url
}

output "schedule_name" {
  value = module.flussfs.schedule_name
}

output "writes_queue_url" {
  value = aws_sqs_queue.writes.url
}
