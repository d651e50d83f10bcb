output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.cluster.cluster_name
}

output "update_kubeconfig_command" {
  description = "Command that points kubectl at the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.cluster.cluster_name}"
}

output "ingress_hostname" {
  description = "DNS name of the NLB in front of ingress-nginx; point the application's DNS record here."
  value       = module.platform.ingress_hostname
}

output "url" {
  description = "Public HTTPS address of the API (the NLB presents the ACM certificate for it)."
  value       = module.public_endpoint.url
}

output "ingress_certificate_arn" {
  description = "ACM certificate on the NLB's 443 listener."
  value       = module.public_endpoint.certificate_arn
}

output "dns_record_created" {
  description = "Whether Terraform points the host name at the NLB (with route53_zone_id); if false, create a CNAME or alias to ingress_hostname yourself."
  value       = module.public_endpoint.dns_record_created
}

output "database_ca_config_map_name" {
  description = "ConfigMap with the RDS CA bundle that the database URLs' sslrootcert names (null without RDS)."
  value       = module.platform.database_ca_config_map_name
}

output "storage_class_name" {
  description = "Default StorageClass (gp3) for the PostgreSQL PVCs."
  value       = module.platform.storage_class_name
}

output "spin_runtime_class_name" {
  description = "RuntimeClass used by the containerd-shim-spin SpinAppExecutor."
  value       = module.platform.spin_runtime_class_name
}

output "app_secret_name" {
  description = "Secret with db_url and jwt_secret written by Terraform (null with the in-cluster database)."
  value       = module.platform.app_secret_name
}

output "database_address" {
  description = "RDS host name (null without RDS)."
  value       = var.enable_rds ? module.rds[0].address : null
}

output "database_master_username" {
  description = "RDS master user that runs the one-time init script (null without RDS)."
  value       = var.enable_rds ? module.rds[0].master_username : null
}

output "database_master_secret_arn" {
  description = "Secrets Manager secret with the RDS master password (null without RDS)."
  value       = var.enable_rds ? module.rds[0].master_user_secret_arn : null
}

output "database_owner_password" {
  description = "conduit_owner password for the one-time init script (null without RDS)."
  value       = var.enable_rds ? module.rds[0].owner_password : null
  sensitive   = true
}

output "database_app_password" {
  description = "conduit_app password for the one-time init script (null without RDS)."
  value       = var.enable_rds ? module.rds[0].app_password : null
  sensitive   = true
}

output "backup_bucket" {
  description = "S3 bucket of the database dumps (Helm value backup.s3.bucket)."
  value       = module.backups.bucket
}

output "backup_role_arn" {
  description = "IRSA role of the backup CronJob (Helm value backup.s3.roleArn)."
  value       = module.backups.role_arn
}
