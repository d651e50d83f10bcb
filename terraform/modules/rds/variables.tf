variable "name" {
  description = "Identifier of the DB instance and prefix of its security group, KMS alias and roles."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the database security group."
  type        = string
}

variable "db_subnet_group_name" {
  description = "DB subnet group over the private database subnets."
  type        = string
}

variable "allowed_security_group_id" {
  description = "The only security group allowed to connect on 5432: the EKS nodes' group (pods use their node's group)."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL major version; RDS applies minor upgrades automatically."
  type        = string
  default     = "17"
}

variable "instance_class" {
  description = "RDS instance class."
  type        = string
}

variable "allocated_storage_gib" {
  description = "Initial gp3 storage."
  type        = number
  default     = 20
}

variable "max_allocated_storage_gib" {
  description = "Upper bound for storage autoscaling."
  type        = number
  default     = 100
}

variable "multi_az" {
  description = "Run a synchronous standby in a second zone with automatic failover."
  type        = bool
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the instance until this is turned off."
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Delete without a final snapshot (only sensible for throw-away environments)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "ssl_mode" {
  description = "sslmode of the URLs handed to the application: verify-full (chain and host name checked against the RDS CA bundle), verify-ca, or require (encrypted, server not authenticated)."
  type        = string
  default     = "verify-full"

  validation {
    condition     = contains(["require", "verify-ca", "verify-full"], var.ssl_mode)
    error_message = "ssl_mode must be require, verify-ca or verify-full (the server enforces TLS, rds.force_ssl)."
  }
}

variable "ssl_root_cert_path" {
  description = "Path of the RDS CA bundle inside the API and migration pods (sslrootcert): where k8s/components/database-ca and the Helm chart mount ConfigMap rds-ca-bundle."
  type        = string
  default     = "/etc/conduit/db-ca/global-bundle.pem"
}

variable "ca_bundle_url" {
  description = "Where Amazon publishes the RDS CA bundle; the global bundle covers every region."
  type        = string
  default     = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"

  validation {
    condition     = startswith(var.ca_bundle_url, "https://")
    error_message = "ca_bundle_url must be an https:// URL: the bundle is a trust anchor."
  }
}
