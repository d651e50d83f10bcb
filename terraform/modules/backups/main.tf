# Off-cluster copies of the Conduit database: the backup CronJob (Helm value backup.target s3)
# uploads each pg_dump with its .sha256 here through IRSA. The bucket is private, encrypted with
# its own KMS key, versioned (an overwrite or deletion can be undone for
# noncurrent_retention_days), reachable only over TLS, and expires dumps after retention_days.
# The CronJob's role may only put objects under the prefix: a compromised pod can add dumps but
# not read, delete or overwrite-for-good the existing ones.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  # Bucket names are global: the account id keeps this one unique.
  bucket_name = "${var.name}-backups-${data.aws_caller_identity.current.account_id}"
  oidc_issuer = replace(var.oidc_provider_arn, "/^arn:[^:]+:iam::[0-9]+:oidc-provider\\//", "")
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key alone, and the account-root statement only delegates access to IAM policies.
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key alone, and the account-root statement only delegates access to IAM policies.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is this key alone; a key policy cannot name the key's own ARN before it exists.
  statement {
    sid       = "AccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "backups" {
  description             = "Database dumps in s3://${local.bucket_name}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "backups" {
  name          = "alias/${var.name}-backups"
  target_key_id = aws_kms_key.backups.key_id
}

resource "aws_s3_bucket" "backups" {
  #checkov:skip=CKV_AWS_18:Server access logging needs a second bucket; object writes are already recorded by CloudTrail, and only the backup role writes here.
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage and needs a bucket in a second region: a per-deployment cost decision (terraform/README.md), versioning and retention cover mistakes within the region.
  #checkov:skip=CKV2_AWS_62:Nothing consumes event notifications of new dumps; a missing dump shows as a failed CronJob.
  bucket        = local.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "backups" {
  bucket                  = aws_s3_bucket.backups.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "backups" {
  bucket = aws_s3_bucket.backups.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.backups.arn
    }
    # One KMS request per upload batch instead of per object.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "backups" {
  bucket = aws_s3_bucket.backups.id

  rule {
    id     = "expire-dumps"
    status = "Enabled"

    filter {
      prefix = var.prefix
    }

    expiration {
      days = var.retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_retention_days
    }
  }

  # An upload cut short leaves parts that are billed but invisible.
  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # The rule needs versioning in place first to apply to noncurrent versions.
  depends_on = [aws_s3_bucket_versioning.backups]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.backups.arn,
      "${aws_s3_bucket.backups.arn}/*",
    ]

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
}

resource "aws_s3_bucket_policy" "backups" {
  bucket = aws_s3_bucket.backups.id
  policy = data.aws_iam_policy_document.bucket.json

  # A bucket policy applied before the public access block could be judged public.
  depends_on = [aws_s3_bucket_public_access_block.backups]
}

# IRSA: only the backup CronJob's service account, in its namespace, may assume the role.
data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${var.service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  name_prefix        = "${var.name}-backup-"
  description        = "The Conduit backup CronJob (IRSA): writes dumps to s3://${local.bucket_name}/${var.prefix}"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "write_dumps" {
  statement {
    sid       = "PutDumps"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.backups.arn}/${var.prefix}*"]
  }

  statement {
    sid       = "EncryptDumps"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt"]
    resources = [aws_kms_key.backups.arn]
  }
}

resource "aws_iam_role_policy" "write_dumps" {
  name   = "write-dumps"
  role   = aws_iam_role.backup.id
  policy = data.aws_iam_policy_document.write_dumps.json
}
