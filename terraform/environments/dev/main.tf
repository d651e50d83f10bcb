# dev: the smallest cluster that runs the whole stack. One NAT gateway, two burstable nodes,
# the in-cluster PostgreSQL by default, volumes deleted with their claims.

locals {
  name = "conduit-dev"
  tags = {
    Project     = "conduit"
    Environment = "dev"
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

  # One NAT gateway for all zones: an outage of its zone cuts egress, acceptable for dev.
  single_nat_gateway = true

  endpoint_public_access_cidrs  = var.api_allowed_cidrs
  admin_principal_arns          = var.admin_principal_arns
  cluster_log_retention_in_days = 30
  flow_log_retention_in_days    = 30

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
  multi_az                  = false
  backup_retention_days     = 1
  deletion_protection       = false
  skip_final_snapshot       = true

  tags = local.tags
}

# Off-cluster copies of the database: the Helm chart's backup CronJob (backup.target s3) writes
# its dumps here through this IRSA role (outputs backup_bucket, backup_role_arn).
module "backups" {
  source = "../../modules/backups"

  name                      = local.name
  oidc_provider_arn         = module.cluster.oidc_provider_arn
  retention_days            = 7
  noncurrent_retention_days = 7
  # Dev is disposable: its bucket goes with it.
  force_destroy = true

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

  ingress_replicas             = 1
  storage_class_reclaim_policy = "Delete"
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
