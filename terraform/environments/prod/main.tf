# prod: every layer survives the loss of one availability zone. A NAT gateway per zone, nodes and
# ingress controllers spread over three zones, Multi-AZ RDS, volumes kept when their claims go,
# deletion protection on the cluster and the database.

locals {
  name = "conduit-prod"
  tags = {
    Project     = "conduit"
    Environment = "prod"
    ManagedBy   = "terraform"
  }
}

provider "aws" {
  region = var.region
}

module "cluster" {
  source = "../../modules/cluster"

  name               = local.name
  kubernetes_version = var.kubernetes_version
  vpc_cidr           = var.vpc_cidr
  availability_zones = var.availability_zones

  # A NAT gateway per zone, so losing one zone leaves the others' egress intact.
  single_nat_gateway = false

  endpoint_public_access_cidrs  = var.api_allowed_cidrs
  admin_principal_arns          = var.admin_principal_arns
  cluster_log_retention_in_days = 365
  flow_log_retention_in_days    = 365
  deletion_protection           = true

  node_groups = {
    general = {
      instance_types = var.node_instance_types
      min_size       = var.node_min_size
      desired_size   = var.node_desired_size
      max_size       = var.node_max_size
    }
  }

  tags = local.tags
}

module "rds" {
  source = "../../modules/rds"
  count  = var.enable_rds ? 1 : 0

  name                      = local.name
  vpc_id                    = module.cluster.vpc_id
  db_subnet_group_name      = module.cluster.database_subnet_group_name
  allowed_security_group_id = module.cluster.node_security_group_id
  instance_class            = var.rds_instance_class
  multi_az                  = true
  backup_retention_days     = 14
  deletion_protection       = true
  skip_final_snapshot       = false
  allocated_storage_gib     = 50
  max_allocated_storage_gib = 500
  # The API and the migrations check the server's certificate and name against the RDS CA bundle
  # (ConfigMap rds-ca-bundle, written by the platform module) before sending a password.
  ssl_mode = "verify-full"

  tags = local.tags
}

# Off-cluster copies of the database: the Helm chart's backup CronJob (backup.target s3) writes
# its dumps here through this IRSA role (outputs backup_bucket, backup_role_arn).
module "backups" {
  source = "../../modules/backups"

  name                      = local.name
  oidc_provider_arn         = module.cluster.oidc_provider_arn
  retention_days            = 35
  noncurrent_retention_days = 30

  tags = local.tags
}

# Both providers authenticate with a short-lived token from the AWS CLI, so no credential is
# stored in the state; they reach the cluster created above in the same apply.
provider "kubernetes" {
  host                   = module.cluster.cluster_endpoint
  cluster_ca_certificate = base64decode(module.cluster.cluster_certificate_authority_data)

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.cluster.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes = {
    host                   = module.cluster.cluster_endpoint
    cluster_ca_certificate = base64decode(module.cluster.cluster_certificate_authority_data)

    exec = {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.cluster.cluster_name, "--region", var.region]
    }
  }
}

module "platform" {
  source = "../../modules/platform"

  # HTTPS ends at the NLB with this ACM certificate and is re-encrypted to ingress-nginx.
  ingress_certificate_arn = module.public_endpoint.certificate_arn

  ingress_replicas             = var.ingress_replicas
  storage_class_reclaim_policy = "Retain"
  enable_metrics_server        = var.enable_metrics_server
  spin_shim_sha256             = var.spin_shim_sha256

  manage_app_secret  = var.enable_rds
  database_url       = var.enable_rds ? module.rds[0].app_database_url : null
  owner_database_url = var.enable_rds ? module.rds[0].owner_database_url : null
  database_host      = var.enable_rds ? module.rds[0].address : null
  database_ca_bundle = var.enable_rds ? module.rds[0].ca_bundle_pem : null

  # Charts need schedulable nodes and the EBS CSI add-on, not just the control plane.
  depends_on = [module.cluster]
}

# The ACM certificate of the public host name (issued through Route 53 DNS validation, or an
# existing one) and, with a hosted zone, the record pointing that name at the NLB.
module "public_endpoint" {
  source = "../../modules/public-endpoint"

  domain_name            = var.domain_name
  route53_zone_id        = var.route53_zone_id
  certificate_arn        = var.ingress_certificate_arn
  load_balancer_hostname = module.platform.ingress_hostname

  tags = local.tags
}
