output "certificate_arn" {
  description = "ACM certificate the NLB presents on 443: the one issued here once validated, or certificate_arn."
  value       = local.issue_certificate ? aws_acm_certificate_validation.ingress[0].certificate_arn : var.certificate_arn
}

output "url" {
  description = "Public base URL of the API."
  value       = "https://${var.domain_name}"
}

output "dns_record_created" {
  description = "Whether Terraform points domain_name at the load balancer (true with route53_zone_id); otherwise create the record yourself."
  value       = local.create_dns_record
}
