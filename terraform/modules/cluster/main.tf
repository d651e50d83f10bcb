# The AWS side of the deployment: a three-zone VPC and an EKS cluster with managed node groups,
# KMS-encrypted secrets, control-plane logs, access entries and the EBS CSI driver. Everything
# that runs inside Kubernetes lives in the platform module, so this module needs only the AWS
# provider and can be planned before the cluster exists.

data "aws_partition" "current" {}

locals {
  # /20 per zone for nodes: the VPC CNI gives every pod a VPC address, so node subnets need room.
  # Public and database subnets only hold load balancer and RDS interfaces, so /24 is plenty.
  private_subnets  = [for index in range(length(var.availability_zones)) : cidrsubnet(var.vpc_cidr, 4, index)]
  public_subnets   = [for index in range(length(var.availability_zones)) : cidrsubnet(var.vpc_cidr, 8, 200 + index)]
  database_subnets = [for index in range(length(var.availability_zones)) : cidrsubnet(var.vpc_cidr, 8, 210 + index)]

  admin_access_entries = {
    for index, principal_arn in var.admin_principal_arns : "admin-${index}" => {
      principal_arn = principal_arn
      policy_associations = {
        cluster_admin = {
          policy_arn = "arn:${data.aws_partition.current.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
          access_scope = {
            type = "cluster"
          }
        }
      }
    }
  }

  node_groups = {
    for group_name, group in var.node_groups : group_name => {
      ami_type       = "AL2023_x86_64_STANDARD"
      instance_types = group.instance_types
      capacity_type  = group.capacity_type
      min_size       = group.min_size
      max_size       = group.max_size
      desired_size   = group.desired_size
      subnet_ids     = module.vpc.private_subnets
      # The SpinKube Shim resource selects nodes by this label; every node here can run Spin apps.
      labels = merge({ spin = "true" }, group.labels)
      block_device_mappings = {
        root = {
          device_name = "/dev/xvda"
          ebs = {
            volume_size           = group.disk_size_gib
            volume_type           = "gp3"
            encrypted             = true
            delete_on_termination = true
          }
        }
      }
    }
  }
}

module "vpc" {
  #checkov:skip=CKV_TF_1:Registry modules take no commit hash; the source is pinned to an exact released version instead.
  source  = "terraform-aws-modules/vpc/aws"
  version = "6.6.0"

  name = var.name
  cidr = var.vpc_cidr
  azs  = var.availability_zones

  private_subnets  = local.private_subnets
  public_subnets   = local.public_subnets
  database_subnets = local.database_subnets

  create_database_subnet_group = true

  enable_nat_gateway     = true
  single_nat_gateway     = var.single_nat_gateway
  one_nat_gateway_per_az = !var.single_nat_gateway

  enable_dns_hostnames = true
  enable_dns_support   = true

  # Nothing in a public subnet needs a public address except the NAT gateways and the NLB,
  # which get theirs explicitly.
  map_public_ip_on_launch = false

  # The default security group stays, but with no rules, so nothing attaches to it by accident.
  manage_default_security_group  = true
  default_security_group_ingress = []
  default_security_group_egress  = []

  enable_flow_log                                 = var.enable_flow_log
  create_flow_log_cloudwatch_log_group            = var.enable_flow_log
  create_flow_log_cloudwatch_iam_role             = var.enable_flow_log
  flow_log_max_aggregation_interval               = 60
  flow_log_cloudwatch_log_group_retention_in_days = var.flow_log_retention_in_days

  # Kubernetes' AWS cloud provider picks load balancer subnets by these role tags: internet-facing
  # NLBs go to public subnets, internal ones to private subnets.
  public_subnet_tags = {
    "kubernetes.io/role/elb" = "1"
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb" = "1"
  }

  tags = var.tags
}

module "eks" {
  #checkov:skip=CKV_TF_1:Registry modules take no commit hash; the source is pinned to an exact released version instead.
  source  = "terraform-aws-modules/eks/aws"
  version = "21.19.0"

  name               = var.name
  kubernetes_version = var.kubernetes_version

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # Terraform installs Helm charts through the API, so it must be reachable from where Terraform
  # runs; the allow-list keeps it closed to everyone else. Nodes use the private endpoint.
  endpoint_public_access       = true
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs
  endpoint_private_access      = true

  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = true
  access_entries                           = local.admin_access_entries

  enabled_log_types                      = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
  cloudwatch_log_group_retention_in_days = var.cluster_log_retention_in_days

  # The module creates a customer-managed KMS key with rotation and encrypts Secrets with it.
  create_kms_key = true
  encryption_config = {
    resources = ["secrets"]
  }

  # IRSA stays available for workloads; the EBS CSI driver itself uses EKS Pod Identity.
  enable_irsa = true

  deletion_protection = var.deletion_protection

  addons = {
    vpc-cni = {
      before_compute = true
      # The manifests' NetworkPolicies (default deny; only the API reaches PostgreSQL) are enforced
      # only when the VPC CNI's network policy agent is on; EKS leaves it off by default.
      configuration_values = jsonencode({
        enableNetworkPolicy = "true"
      })
    }
    eks-pod-identity-agent = {
      before_compute = true
    }
    kube-proxy = {}
    coredns    = {}
    aws-ebs-csi-driver = {
      pod_identity_association = [{
        role_arn        = aws_iam_role.ebs_csi_driver.arn
        service_account = "ebs-csi-controller-sa"
      }]
    }
  }

  eks_managed_node_groups = local.node_groups

  tags = var.tags
}

# EBS CSI driver: the controller creates, attaches and deletes the gp3 volumes behind PVCs. Its
# service account receives this role through EKS Pod Identity (no OIDC trust policy to maintain).
data "aws_iam_policy_document" "ebs_csi_driver_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "ebs_csi_driver" {
  name_prefix        = "${var.name}-ebs-csi-"
  description        = "EBS CSI driver controller of EKS cluster ${var.name} (EKS Pod Identity)"
  assume_role_policy = data.aws_iam_policy_document.ebs_csi_driver_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ebs_csi_driver" {
  role       = aws_iam_role.ebs_csi_driver.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}
