variable "app_namespace" {
  description = "Namespace of the Conduit application (SpinApps, Secret conduit-secrets)."
  type        = string
  default     = "conduit"
}

variable "ingress_nginx_chart_version" {
  description = "Version of the ingress-nginx Helm chart."
  type        = string
  default     = "4.14.3"
}

variable "ingress_replicas" {
  description = "Replicas of the ingress-nginx controller; above 1 the chart adds a PodDisruptionBudget."
  type        = number
  default     = 1
}

variable "ingress_certificate_arn" {
  description = "ACM certificate the NLB presents on its 443 listener (TLS ends there, then is re-encrypted to ingress-nginx)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]+:certificate/[0-9a-f-]+$", var.ingress_certificate_arn))
    error_message = "ingress_certificate_arn must be an ACM certificate ARN."
  }
}

variable "ingress_ssl_policy" {
  description = "Security policy of the NLB's TLS listener: TLS 1.3 and 1.2 with forward-secret AEAD ciphers only."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"

  validation {
    condition     = startswith(var.ingress_ssl_policy, "ELBSecurityPolicy-TLS13-")
    error_message = "ingress_ssl_policy must be one of the ELBSecurityPolicy-TLS13-* policies (TLS 1.3 offered, nothing older than 1.2)."
  }
}

variable "ingress_internal" {
  description = "Put the NLB in the private subnets (reachable only from the VPC) instead of the public ones."
  type        = bool
  default     = false
}

variable "cert_manager_chart_version" {
  description = "Version of the cert-manager Helm chart (also required by the spin-operator's admission webhooks)."
  type        = string
  default     = "v1.20.2"
}

variable "runtime_class_manager_chart_version" {
  description = "Version of the SpinKube runtime-class-manager Helm chart (installs the shim on nodes)."
  type        = string
  default     = "0.2.0"
}

variable "spin_operator_chart_version" {
  description = "Version of the SpinKube spin-operator Helm chart."
  type        = string
  default     = "0.6.1"
}

variable "spin_shim_version" {
  description = "containerd-shim-spin release installed on the nodes (v0.24.x runs Spin 3.6, which spin-sdk 5.2 targets)."
  type        = string
  default     = "v0.24.0"

  validation {
    condition     = can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.spin_shim_version))
    error_message = "spin_shim_version must look like v0.24.0."
  }
}

variable "spin_shim_sha256" {
  description = "Optional sha256 of the containerd-shim-spin release tarballs, keyed by architecture (x86_64, aarch64); the shim downloader verifies them when set."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for arch, digest in var.spin_shim_sha256 : contains(["x86_64", "aarch64"], arch) && can(regex("^[0-9a-f]{64}$", digest))])
    error_message = "spin_shim_sha256 keys must be x86_64 or aarch64 and values 64 lowercase hex digits."
  }
}

variable "enable_metrics_server" {
  description = "Install metrics-server so HorizontalPodAutoscalers (SpinApp enableAutoscaling) get CPU and memory metrics."
  type        = bool
  default     = true
}

variable "metrics_server_chart_version" {
  description = "Version of the metrics-server Helm chart."
  type        = string
  default     = "3.13.0"
}

variable "storage_class_reclaim_policy" {
  description = "What happens to a gp3 volume when its PVC is deleted: Delete (dev) or Retain (prod, keeps the data)."
  type        = string
  default     = "Delete"

  validation {
    condition     = contains(["Delete", "Retain"], var.storage_class_reclaim_policy)
    error_message = "storage_class_reclaim_policy must be Delete or Retain."
  }
}

variable "manage_app_secret" {
  description = "Create Secret conduit-secrets (db_url, migrate_db_url, db_host, db_port, jwt_secret) for an external database; false when the Kubernetes manifests bring their own database and secret."
  type        = bool
  default     = false
}

variable "database_url" {
  description = "URL of the application role (conduit_app) stored as db_url in conduit-secrets; required when manage_app_secret is true."
  type        = string
  default     = null
  sensitive   = true
}

variable "owner_database_url" {
  description = "URL of the schema owner role (conduit_owner) stored as migrate_db_url, which the migration Job reads; required when manage_app_secret is true."
  type        = string
  default     = null
  sensitive   = true
}

variable "database_host" {
  description = "Database host name stored as db_host (the Spin variable allowed_outbound_hosts is built from); required when manage_app_secret is true."
  type        = string
  default     = null
}

variable "database_ca_bundle" {
  description = "PEM CA bundle of the external database (Amazon RDS's), written to ConfigMap rds-ca-bundle for sslrootcert; required when manage_app_secret is true."
  type        = string
  default     = null
}

variable "database_port" {
  description = "Database port stored as db_port."
  type        = number
  default     = 5432
}
