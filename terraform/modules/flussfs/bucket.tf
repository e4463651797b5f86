# The tables' bucket: private, encrypted, versioned, and a policy that makes the format's
# immutable objects immutable for every principal (format_spec/spec-v1.md, sections 2 and 12).
#
# Invariants:
# - No ACLs (BucketOwnerEnforced) and all four public access blocks on.
# - Every request without TLS is denied.
# - Commits, segments, checkpoints, table metadata, snapshots, batch receipts and Iceberg
#   v<N>.metadata.json can only be created with If-None-Match, and commits, table metadata
#   and v<N>.metadata.json never deleted, whatever IAM grants.
# - The two hints (_last_checkpoint, version-hint.text) stay writable with a plain PUT.
# - A version deleted by the garbage collector stays recoverable for gc_recovery_days.

resource "aws_s3_bucket" "tables" {
  #checkov:skip=CKV_AWS_18:Server access logs go to a bucket outside this module; enable them with aws_s3_bucket_logging where one exists (CloudTrail data events are the alternative).
  #checkov:skip=CKV_AWS_144:Cross-region replication needs a second region and bucket; versioning plus lifecycle is this module's recovery story.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events: flussfs readers and the compactor poll by design.
  #checkov:skip=CKV_AWS_145:SSE-S3 by default; SSE-KMS when kms_key_arn is set (the rule below switches on it).
  bucket = var.bucket_name
  tags   = var.tags
}

resource "aws_s3_bucket_public_access_block" "tables" {
  bucket = aws_s3_bucket.tables.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "tables" {
  bucket = aws_s3_bucket.tables.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "tables" {
  bucket = aws_s3_bucket.tables.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = local.kms_enabled ? "aws:kms" : "AES256"
      kms_master_key_id = var.kms_key_arn
    }
    # One KMS request per bucket key rather than per object: flussfs writes many small objects.
    bucket_key_enabled = local.kms_enabled
  }
}

resource "aws_s3_bucket_versioning" "tables" {
  bucket = aws_s3_bucket.tables.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "tables" {
  # Lifecycle rules on noncurrent versions need versioning in place first.
  depends_on = [aws_s3_bucket_versioning.tables]
  bucket     = aws_s3_bucket.tables.id

  # "Expire what the garbage collector marks": the compactor's DeleteObject only adds a delete
  # marker (its role has no s3:DeleteObjectVersion), so a collected file stays recoverable as a
  # noncurrent version for gc_recovery_days and is then removed, and so is the delete marker left
  # behind. Overwritten hints age out the same way.
  rule {
    id     = "gc-recovery-window"
    status = "Enabled"
    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
    noncurrent_version_expiration {
      noncurrent_days = var.gc_recovery_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  # The Lambda writer's idempotency receipts, one rule per table: lifecycle filters are literal
  # prefixes, so a table added later needs its prefix added to table_prefixes.
  dynamic "rule" {
    for_each = local.table_roots
    content {
      id     = "batch-receipts/${rule.value}"
      status = "Enabled"
      filter {
        prefix = "${rule.value}_flussfs/batches/"
      }

      abort_incomplete_multipart_upload {
        days_after_initiation = 1
      }
      expiration {
        days = var.batch_receipt_days
      }
    }
  }

  # Fan-out spill objects only live for one compaction (at most 15 minutes).
  rule {
    id     = "fanout-spill"
    status = "Enabled"
    filter {
      prefix = local.fanout_prefix
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
    expiration {
      days = 1
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # PutObject and CompleteMultipartUpload must carry If-None-Match. CreateMultipartUpload,
  # UploadPart and UploadPartCopy authorize as s3:PutObject too but cannot carry the header;
  # s3:ObjectCreationOperation is false for them, which keeps them out of this deny.
  statement {
    sid       = "DenyUnconditionalWritesOfImmutableObjects"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = local.immutable_object_arns

    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:if-none-match"
      values   = ["true"]
    }
    condition {
      test     = "Bool"
      variable = "s3:ObjectCreationOperation"
      values   = ["true"]
    }
  }

  # Nothing in flussfs v1 deletes these; dropping a table starts with an edit of this policy.
  statement {
    sid       = "DenyDeletionOfCommitsAndMetadata"
    effect    = "Deny"
    actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    resources = local.undeletable_object_arns

    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }
}

resource "aws_s3_bucket_policy" "tables" {
  # The public access block first: a policy put while it is missing is judged without it.
  depends_on = [aws_s3_bucket_public_access_block.tables]
  bucket     = aws_s3_bucket.tables.id
  policy     = data.aws_iam_policy_document.bucket.json
}
