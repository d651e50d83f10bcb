# The public face of the cluster: the ACM certificate the Network Load Balancer presents on 443
# and, with a Route 53 zone, the DNS name pointing at that load balancer.
#
# TLS from clients ends at the NLB with this certificate (ACM renews it, its key never leaves AWS).
# The NLB then opens a new TLS connection to ingress-nginx's HTTPS port, where the Ingress's
# cert-manager certificate answers; the NLB does not validate that one. terraform/README.md says
# why both exist.
#
# Either a certificate is issued here (route53_zone_id: DNS validation, renewed by ACM as long as
# the validation record stays), or certificate_arn names one that exists. The module takes the
# load balancer's host name from the platform module and gives that module the certificate ARN;
# Terraform orders the resources, not the modules, so this is no cycle.

locals {
  issue_certificate = var.certificate_arn == null
  create_dns_record = var.route53_zone_id != null
}

resource "aws_acm_certificate" "ingress" {
  count = local.issue_certificate ? 1 : 0

  domain_name       = var.domain_name
  validation_method = "DNS"

  options {
    # Browsers and clients expect certificate transparency logs for publicly trusted names.
    certificate_transparency_logging_preference = "ENABLED"
  }

  tags = merge(var.tags, { Name = var.domain_name })

  # The listener holds the certificate: a replacement must exist before the old one goes.
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "validation" {
  for_each = local.issue_certificate ? {
    for option in aws_acm_certificate.ingress[0].domain_validation_options : option.domain_name => option
  } : {}

  zone_id = var.route53_zone_id
  name    = each.value.resource_record_name
  type    = each.value.resource_record_type
  records = [each.value.resource_record_value]
  ttl     = 300
  # ACM derives the record from the account and the name, so a certificate issued earlier for
  # the same name left the very same record; take it over rather than fail. ACM renews against
  # it, so it stays as long as the certificate does.
  allow_overwrite = true
}

# Waits until ACM has issued the certificate, so the NLB listener is never given a pending one.
resource "aws_acm_certificate_validation" "ingress" {
  count = local.issue_certificate ? 1 : 0

  certificate_arn         = aws_acm_certificate.ingress[0].arn
  validation_record_fqdns = [for record in aws_route53_record.validation : record.fqdn]
}

data "aws_lb_hosted_zone_id" "network" {
  load_balancer_type = "network"
}

# An alias rather than a CNAME: it works at a zone apex too, and Route 53 answers it with the
# NLB's current addresses.
resource "aws_route53_record" "ingress" {
  count = local.create_dns_record ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"

  alias {
    name                   = var.load_balancer_hostname
    zone_id                = data.aws_lb_hosted_zone_id.network.id
    evaluate_target_health = true
  }

  lifecycle {
    precondition {
      condition     = var.load_balancer_hostname != ""
      error_message = "The load balancer has no DNS name yet; run terraform apply again in a minute."
    }
  }
}
