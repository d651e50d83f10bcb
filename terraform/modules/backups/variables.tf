variable "name" {
  description = "Name prefix of the bucket, key and role (e.g. conduit-prod)."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA)."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the backup CronJob's service account."
  type        = string
  default     = "conduit"
}

variable "service_account" {
  description = "Name of the backup CronJob's service account (the Helm chart's is conduit-backup)."
  type        = string
  default     = "conduit-backup"
}

variable "prefix" {
  description = "Key prefix of the dumps; the role may write only below it."
  type        = string
  default     = "conduit/"
}

variable "retention_days" {
  description = "Days a dump is kept before the lifecycle rule expires it."
  type        = number
  default     = 35

  validation {
    condition     = var.retention_days >= 1
    error_message = "retention_days must be at least 1."
  }
}

variable "noncurrent_retention_days" {
  description = "Days an overwritten or deleted dump's old version is kept (versioning's undo window)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_retention_days >= 1
    error_message = "noncurrent_retention_days must be at least 1."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete a bucket that still holds dumps (throw-away environments only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
