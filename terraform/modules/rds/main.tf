# Managed PostgreSQL for Conduit: encrypted with its own KMS key, in the private database subnets,
# reachable on 5432 only from the EKS nodes, TLS enforced. The master password lives only in
# Secrets Manager (RDS-managed); the application and owner role passwords are generated here and
# handed to the cluster as a Kubernetes Secret, never written to the repository.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key alone, and the account-root statement only delegates access to IAM policies.
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key alone, and the account-root statement only delegates access to IAM policies.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is this key alone; a key policy cannot name the key's own ARN before it exists.
  # Key administration stays with the account's IAM policies; RDS and Secrets Manager use the key
  # through grants they create on the instance's behalf.
  statement {
    sid       = "AccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "database" {
  description             = "Storage, Performance Insights and master secret of RDS instance ${var.name}"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
}

resource "aws_kms_alias" "database" {
  name          = "alias/${var.name}-rds"
  target_key_id = aws_kms_key.database.key_id
}

resource "aws_security_group" "database" {
  name_prefix = "${var.name}-rds-"
  description = "PostgreSQL ${var.name}: 5432 from the EKS nodes only"
  vpc_id      = var.vpc_id
  tags        = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "postgres_from_nodes" {
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from EKS nodes"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = var.allowed_security_group_id
  tags                         = var.tags
}

resource "aws_db_parameter_group" "postgres" {
  name_prefix = "${var.name}-"
  family      = "postgres${var.engine_version}"
  description = "Conduit PostgreSQL ${var.engine_version}: TLS only, slow and DDL statements logged"
  tags        = var.tags

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

data "aws_iam_policy_document" "monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  name_prefix        = "${var.name}-rds-mon-"
  description        = "Enhanced Monitoring of RDS instance ${var.name}"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "postgres" {
  #checkov:skip=CKV_AWS_157:Multi-AZ is an input per environment: prod sets it (asserted by terraform/tests), dev runs single-AZ to halve its cost.
  #checkov:skip=CKV_AWS_293:Deletion protection is an input per environment: prod sets it (asserted by terraform/tests), dev is disposable.
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  # No initial database: migrations/init/init.sql creates `conduit` owned by conduit_owner.
  username                      = "conduit_admin"
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.database.arn

  allocated_storage     = var.allocated_storage_gib
  max_allocated_storage = var.max_allocated_storage_gib
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.database.arn

  multi_az               = var.multi_az
  db_subnet_group_name   = var.db_subnet_group_name
  vpc_security_group_ids = [aws_security_group.database.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.postgres.name

  iam_database_authentication_enabled = true
  auto_minor_version_upgrade          = true

  # Automated backups are daily snapshots plus the transaction log: point-in-time recovery to
  # any second of the retention window (up to about five minutes ago).
  backup_retention_period = var.backup_retention_days
  backup_window           = "02:00-03:00"
  maintenance_window      = "sun:04:00-sun:05:00"
  # Deleting the instance keeps its automated backups for their retention period, so even a
  # deleted database can be restored to a point in time.
  delete_automated_backups  = false
  copy_tags_to_snapshot     = true
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = var.skip_final_snapshot
  final_snapshot_identifier = "${var.name}-final"

  enabled_cloudwatch_logs_exports       = ["postgresql", "upgrade"]
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.monitoring.arn
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.database.arn
  performance_insights_retention_period = 7

  tags = var.tags

  depends_on = [aws_iam_role_policy_attachment.monitoring]
}

# Passwords of the two roles migrations/init/init.sql creates. Alphanumeric, so they can go into a
# URL without escaping.
resource "random_password" "owner" {
  length  = 32
  special = false
}

resource "random_password" "app" {
  length  = 32
  special = false
}

locals {
  database_address = aws_db_instance.postgres.address
  database_port    = aws_db_instance.postgres.port

  # TLS options of both URLs: with verify-ca/verify-full the client checks the server against the
  # RDS CA bundle at ssl_root_cert_path (wasmhost reads sslrootcert as libpq does).
  tls_query = startswith(var.ssl_mode, "verify-") ? "sslmode=${var.ssl_mode}&sslrootcert=${var.ssl_root_cert_path}" : "sslmode=${var.ssl_mode}"
}

# Amazon's bundle of every RDS certificate authority (all regions, current and next CAs), which
# the clients need for verify-full: RDS server certificates do not chain to a public root. Read
# over HTTPS at plan time and handed to the cluster as a ConfigMap by the platform module.
data "http" "ca_bundle" {
  url = var.ca_bundle_url

  lifecycle {
    postcondition {
      condition     = self.status_code == 200 && strcontains(self.response_body, "-----BEGIN CERTIFICATE-----")
      error_message = "${var.ca_bundle_url} did not return a PEM certificate bundle."
    }
  }
}
