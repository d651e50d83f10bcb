variable "name" {
  description = "Name of the cluster; also the prefix of the VPC, IAM roles and other named resources."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes <major>.<minor> version of the EKS control plane and node groups."
  type        = string
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC (a /16 leaves room for /20 node subnets, which the VPC CNI fills with pod IPs)."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 16
    error_message = "vpc_cidr must be a valid IPv4 CIDR of size /16 or larger."
  }
}

variable "availability_zones" {
  description = "Availability zones the VPC and nodes span, named explicitly so the set never changes when AWS adds a zone (subnets are numbered by position)."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4 && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "availability_zones must list 2 to 4 distinct zones (EKS needs at least two)."
  }
}

variable "single_nat_gateway" {
  description = "One shared NAT gateway (cheaper, one zone's outage cuts egress for all) instead of one per availability zone."
  type        = bool
}

variable "enable_flow_log" {
  description = "Send VPC flow logs to CloudWatch Logs."
  type        = bool
  default     = true
}

variable "flow_log_retention_in_days" {
  description = "Retention of the VPC flow log group."
  type        = number
  default     = 365
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API endpoint (where Terraform, kubectl and CI run). Private access from the VPC is always on."
  type        = list(string)

  validation {
    condition     = length(var.endpoint_public_access_cidrs) > 0 && alltrue([for cidr in var.endpoint_public_access_cidrs : can(cidrhost(cidr, 0))])
    error_message = "endpoint_public_access_cidrs must be a non-empty list of valid CIDRs."
  }
}

variable "cluster_log_retention_in_days" {
  description = "Retention of the control-plane log group."
  type        = number
  default     = 90
}

variable "admin_principal_arns" {
  description = "IAM role or user ARNs granted cluster-admin through EKS access entries (in addition to the identity that runs Terraform)."
  type        = list(string)
  default     = []
}

variable "node_groups" {
  description = "EKS managed node groups, keyed by name. Nodes run in the private subnets and carry the label spin=true, so the SpinKube shim installer puts containerd-shim-spin on them."
  type = map(object({
    instance_types = list(string)
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = number
    max_size       = number
    desired_size   = number
    disk_size_gib  = optional(number, 30)
    labels         = optional(map(string), {})
  }))

  validation {
    condition     = length(var.node_groups) > 0 && alltrue([for group in values(var.node_groups) : group.min_size <= group.desired_size && group.desired_size <= group.max_size])
    error_message = "node_groups must not be empty, and each group needs min_size <= desired_size <= max_size."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the EKS cluster until this is turned off."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
