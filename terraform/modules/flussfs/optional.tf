# Optional parts: a Glue database for the Iceberg tables, and an S3 Express One Zone directory
# bucket for latency-critical tables (terraform/README.md, "S3 Express One Zone", says what does
# not carry over to it).

resource "aws_glue_catalog_database" "tables" {
  count       = local.glue_enabled ? 1 : 0
  name        = var.glue_database
  description = "Iceberg tables published by the flussfs compactor from ${var.bucket_name}."
}

resource "aws_s3_directory_bucket" "express" {
  count  = local.express_enabled ? 1 : 0
  bucket = local.express_bucket

  location {
    name = var.express_availability_zone_id
    type = "AvailabilityZone"
  }
}
