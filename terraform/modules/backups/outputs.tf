output "bucket" {
  description = "Name of the backup bucket (Helm value backup.s3.bucket)."
  value       = aws_s3_bucket.backups.id
}

output "prefix" {
  description = "Key prefix of the dumps (Helm value backup.s3.prefix)."
  value       = var.prefix
}

output "role_arn" {
  description = "IRSA role of the backup CronJob's service account (Helm value backup.s3.roleArn)."
  value       = aws_iam_role.backup.arn
}

output "kms_key_arn" {
  description = "KMS key encrypting the dumps (whoever restores needs kms:Decrypt on it)."
  value       = aws_kms_key.backups.arn
}
