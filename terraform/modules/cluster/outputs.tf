output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API server."
  value       = module.eks.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64-encoded CA certificate of the Kubernetes API server."
  value       = module.eks.cluster_certificate_authority_data
}

output "cluster_version" {
  description = "Kubernetes version of the control plane."
  value       = module.eks.cluster_version
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider, for IRSA roles of workloads."
  value       = module.eks.oidc_provider_arn
}

output "node_security_group_id" {
  description = "Security group shared by all nodes (and so by all pods); the database admits only this group."
  value       = module.eks.node_security_group_id
}

output "kms_key_arn" {
  description = "KMS key that encrypts Kubernetes Secrets."
  value       = module.eks.kms_key_arn
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = module.vpc.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets of the nodes, one per availability zone."
  value       = module.vpc.private_subnets
}

output "public_subnet_ids" {
  description = "Public subnets of the load balancers, one per availability zone."
  value       = module.vpc.public_subnets
}

output "database_subnet_group_name" {
  description = "DB subnet group spanning the private database subnets."
  value       = module.vpc.database_subnet_group_name
}

output "nat_gateway_ids" {
  description = "NAT gateways (one in dev, one per zone in prod)."
  value       = module.vpc.natgw_ids
}
