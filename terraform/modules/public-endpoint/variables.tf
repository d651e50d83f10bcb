variable "domain_name" {
  description = "Public host name of the API (e.g. conduit.example.com): the certificate's name, and the Ingress host of the Kubernetes manifests."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([-a-z0-9]*[a-z0-9])?\\.)+[a-z][-a-z0-9]*[a-z0-9]$", var.domain_name))
    error_message = "domain_name must be a lowercase, fully qualified host name such as conduit.example.com (no wildcard, no trailing dot)."
  }
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone of domain_name. When set, ACM validates the new certificate through records in this zone, and the zone gets an alias record pointing domain_name at the load balancer."
  type        = string
  default     = null

  validation {
    condition     = var.route53_zone_id != null || var.certificate_arn != null
    error_message = "Set route53_zone_id (ACM issues and renews a certificate through DNS validation) or certificate_arn (an ACM certificate you already have)."
  }
}

variable "certificate_arn" {
  description = "ARN of an existing ACM certificate for domain_name, in the cluster's region; used instead of issuing one."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]+:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)."
  }
}

variable "load_balancer_hostname" {
  description = "DNS name of the Network Load Balancer in front of ingress-nginx, the target of the alias record (used only with route53_zone_id)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
