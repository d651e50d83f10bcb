variable "region" {
  description = "AWS region of the environment."
  type        = string
  default     = "us-east-1"
}

variable "availability_zones" {
  description = "Three availability zones of the region, named explicitly so the set is stable."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b", "us-east-1c"]

  validation {
    condition     = length(var.availability_zones) == 3 && alltrue([for zone in var.availability_zones : startswith(zone, var.region)])
    error_message = "availability_zones must be three zones of var.region."
  }
}

variable "domain_name" {
  description = "Public host name of the API, e.g. conduit.example.com: the ACM certificate's name, and the host the Kubernetes manifests' Ingress and Certificate must name."
  type        = string
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of domain_name: ACM validates the certificate there, and Terraform points domain_name at the NLB. Null: give ingress_certificate_arn and create the DNS record yourself."
  type        = string
  default     = null
}

variable "ingress_certificate_arn" {
  description = "An existing ACM certificate for domain_name in var.region, used instead of issuing one (null: issue one through route53_zone_id)."
  type        = string
  default     = null
}

variable "kubernetes_version" {
  description = "Kubernetes <major>.<minor> version of the cluster."
  type        = string
  default     = "1.35"
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the environment's VPC."
  type        = string
  default     = "10.30.0.0/16"
}

variable "api_allowed_cidrs" {
  description = "CIDRs that may reach the Kubernetes API endpoint: where you run Terraform, kubectl and CI."
  type        = list(string)
}

variable "admin_principal_arns" {
  description = "IAM role or user ARNs given cluster-admin access entries, besides the identity running Terraform."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "Instance types of the managed node group (the first one with capacity is used)."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "node_min_size" {
  description = "Minimum nodes (one per availability zone at least)."
  type        = number
  default     = 3
}

variable "node_desired_size" {
  description = "Nodes at creation (later changes are ignored by EKS scaling)."
  type        = number
  default     = 3
}

variable "node_max_size" {
  description = "Maximum nodes."
  type        = number
  default     = 6
}

variable "enable_rds" {
  description = "Use RDS PostgreSQL (Multi-AZ) instead of the in-cluster StatefulSet; Terraform then writes Secret conduit-secrets."
  type        = bool
  default     = true
}

variable "rds_instance_class" {
  description = "RDS instance class when enable_rds is true."
  type        = string
  default     = "db.m7g.large"
}

variable "enable_metrics_server" {
  description = "Install metrics-server for HorizontalPodAutoscalers."
  type        = bool
  default     = true
}

variable "spin_shim_sha256" {
  description = "Optional sha256 digests of the containerd-shim-spin tarballs by architecture (x86_64, aarch64)."
  type        = map(string)
  default     = {}
}

variable "ingress_replicas" {
  description = "ingress-nginx controller replicas, spread over the zones."
  type        = number
  default     = 3
}
