# Everything the Conduit manifests expect to find inside the cluster: a default gp3
# StorageClass, ingress-nginx behind an NLB that terminates TLS with an ACM certificate,
# cert-manager, SpinKube (CRDs, shim installer, RuntimeClass, executor, operator),
# metrics-server, the application namespace and, with an external database, the application
# Secret and the database's CA bundle. The caller configures the kubernetes and helm providers
# against the cluster.

locals {
  ingress_namespace = "ingress-nginx"

  # Annotations read by the AWS cloud provider's service controller (built into EKS), so no extra
  # controller is needed for an NLB; the AWS Load Balancer Controller reads the same TLS
  # annotations, should it replace the built-in one. The NLB goes into the subnets tagged
  # kubernetes.io/role/elb (or internal-elb when internal).
  #
  # TLS: the 443 listener terminates TLS with the ACM certificate under the TLS 1.3/1.2 policy,
  # then opens TLS again to ingress-nginx's HTTPS port (backend protocol ssl), without checking
  # the certificate ingress-nginx presents there. ingress-nginx thus sees every HTTPS request
  # arrive over TLS: the Ingresses' ssl-redirect and the HSTS header behave exactly as on a
  # cluster without the NLB, and the hop inside the VPC stays encrypted.
  # The 80 listener stays plain TCP to ingress-nginx's HTTP port, which answers with a redirect
  # to HTTPS and serves cert-manager's HTTP-01 challenges. The Service has only these two ports,
  # so the NLB has no other listener.
  ingress_service_annotations = merge(
    {
      "service.beta.kubernetes.io/aws-load-balancer-type"                              = "nlb"
      "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled" = "true"
      "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"                          = var.ingress_certificate_arn
      "service.beta.kubernetes.io/aws-load-balancer-ssl-ports"                         = "443"
      "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy"            = var.ingress_ssl_policy
      "service.beta.kubernetes.io/aws-load-balancer-backend-protocol"                  = "ssl"
    },
    var.ingress_internal ? { "service.beta.kubernetes.io/aws-load-balancer-internal" = "true" } : {},
  )

  # Where the Kubernetes manifests look for the external database's CA bundle (k8s/components/
  # database-ca, the chart's database.external.caBundleConfigMap); the URLs' sslrootcert names
  # the key's file under /etc/conduit/db-ca/.
  database_ca_config_map = "rds-ca-bundle"
  database_ca_key        = "global-bundle.pem"
}

# Default StorageClass for the PostgreSQL PVCs. EKS clusters created on 1.30 or later no longer mark
# the legacy gp2 class as default, so this is the only default class.
resource "kubernetes_storage_class_v1" "gp3" {
  metadata {
    name = "gp3"
    annotations = {
      "storageclass.kubernetes.io/is-default-class" = "true"
    }
  }

  storage_provisioner = "ebs.csi.aws.com"
  reclaim_policy      = var.storage_class_reclaim_policy
  # Create the volume in the zone the pod is scheduled to; EBS volumes cannot cross zones.
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true

  parameters = {
    type      = "gp3"
    encrypted = "true"
    fsType    = "ext4"
  }
}

resource "kubernetes_namespace_v1" "app" {
  metadata {
    name = var.app_namespace
    labels = {
      "app.kubernetes.io/part-of" = "conduit"
      # Report pods that fall short of the restricted profile without blocking them: pods the
      # spin-operator generates do not set every field the profile demands.
      "pod-security.kubernetes.io/warn"  = "restricted"
      "pod-security.kubernetes.io/audit" = "restricted"
    }
  }
}

resource "helm_release" "ingress_nginx" {
  name             = "ingress-nginx"
  repository       = "https://kubernetes.github.io/ingress-nginx"
  chart            = "ingress-nginx"
  version          = var.ingress_nginx_chart_version
  namespace        = local.ingress_namespace
  create_namespace = true
  wait             = true
  timeout          = 600

  values = [yamlencode({
    controller = {
      replicaCount = var.ingress_replicas
      ingressClassResource = {
        name    = "nginx"
        default = true
      }
      service = {
        annotations = local.ingress_service_annotations
        # Local keeps the client's source address (used by per-client rate limits) and skips the
        # second hop between nodes; the NLB health-checks only nodes that run a controller.
        externalTrafficPolicy = "Local"
        # The only two listeners open to the world: HTTPS, and HTTP for the redirect and ACME.
        enableHttp  = true
        enableHttps = true
        ports = {
          http  = 80
          https = 443
        }
        targetPorts = {
          http  = "http"
          https = "https"
        }
      }
      # ingress-nginx's own options (its ConfigMap), for every Ingress it serves. HSTS belongs
      # here: ingress-nginx offers it as a ConfigMap option, not as an annotation. It goes out on
      # responses to requests that reached the controller over TLS, which with the NLB
      # re-encrypting is every HTTPS request. Two years, without subdomains or preload, as
      # docker/nginx sends it; TLS 1.2 and 1.3, as the NLB's policy offers.
      config = {
        "ssl-redirect"            = "true"
        "hsts"                    = "true"
        "hsts-max-age"            = "63072000"
        "hsts-include-subdomains" = "false"
        "hsts-preload"            = "false"
        "ssl-protocols"           = "TLSv1.2 TLSv1.3"
      }
      topologySpreadConstraints = [{
        maxSkew           = 1
        topologyKey       = "topology.kubernetes.io/zone"
        whenUnsatisfiable = "ScheduleAnyway"
        labelSelector = {
          matchLabels = {
            "app.kubernetes.io/name"      = "ingress-nginx"
            "app.kubernetes.io/instance"  = "ingress-nginx"
            "app.kubernetes.io/component" = "controller"
          }
        }
      }]
      metrics = {
        enabled = true
      }
    }
  })]
}

resource "helm_release" "cert_manager" {
  name             = "cert-manager"
  repository       = "https://charts.jetstack.io"
  chart            = "cert-manager"
  version          = var.cert_manager_chart_version
  namespace        = "cert-manager"
  create_namespace = true
  wait             = true
  timeout          = 600

  values = [yamlencode({
    crds = {
      enabled = true
      # Keep the CRDs (and with them every Certificate) if the release is ever uninstalled.
      keep = true
    }
  })]
}

resource "helm_release" "metrics_server" {
  count = var.enable_metrics_server ? 1 : 0

  name       = "metrics-server"
  repository = "https://kubernetes-sigs.github.io/metrics-server/"
  chart      = "metrics-server"
  version    = var.metrics_server_chart_version
  namespace  = "kube-system"
  wait       = true
}

# SpinKube, in dependency order: the shim installer (runtime-class-manager) with its Shim CRD,
# then our local chart (SpinKube CRDs, the Shim that installs containerd-shim-spin on every
# spin=true node and creates the wasmtime-spin-v2 RuntimeClass, and the containerd-shim-spin
# SpinAppExecutor), then the operator, whose admission webhooks need cert-manager.
resource "helm_release" "runtime_class_manager" {
  name             = "runtime-class-manager"
  repository       = "oci://ghcr.io/spinframework/charts"
  chart            = "runtime-class-manager"
  version          = var.runtime_class_manager_chart_version
  namespace        = "runtime-class-manager"
  create_namespace = true
  wait             = true
}

resource "helm_release" "spinkube_runtime" {
  name             = "spinkube-runtime"
  chart            = "${path.module}/charts/spinkube-runtime"
  namespace        = "spin-operator"
  create_namespace = true
  wait             = true

  values = [yamlencode({
    shim = {
      version = var.spin_shim_version
      sha256  = var.spin_shim_sha256
    }
    executor = {
      namespaces = [kubernetes_namespace_v1.app.metadata[0].name]
    }
  })]

  depends_on = [helm_release.runtime_class_manager]
}

resource "helm_release" "spin_operator" {
  name             = "spin-operator"
  repository       = "oci://ghcr.io/spinframework/charts"
  chart            = "spin-operator"
  version          = var.spin_operator_chart_version
  namespace        = "spin-operator"
  create_namespace = true
  wait             = true
  timeout          = 600

  depends_on = [helm_release.cert_manager, helm_release.spinkube_runtime]
}

# The application's Secret, for an external database (RDS). With the in-cluster PostgreSQL the
# Kubernetes manifests create it instead, so this stays off.
resource "random_password" "jwt_secret" {
  count = var.manage_app_secret ? 1 : 0

  length  = 64
  special = false
}

resource "kubernetes_secret_v1" "app" {
  count = var.manage_app_secret ? 1 : 0

  metadata {
    name      = "conduit-secrets"
    namespace = kubernetes_namespace_v1.app.metadata[0].name
    labels = {
      "app.kubernetes.io/part-of"    = "conduit"
      "app.kubernetes.io/managed-by" = "terraform"
    }
  }

  data = {
    db_url         = var.database_url
    migrate_db_url = var.owner_database_url
    db_host        = var.database_host
    db_port        = tostring(var.database_port)
    jwt_secret     = random_password.jwt_secret[0].result
  }

  lifecycle {
    precondition {
      condition     = var.database_url != null && var.owner_database_url != null && var.database_host != null
      error_message = "manage_app_secret needs database_url, owner_database_url and database_host."
    }
  }
}

# The external database's CA bundle (Amazon RDS's), which the API and migration pods mount so
# that sslmode=verify-full in the URLs above can check the server's certificate and name.
resource "kubernetes_config_map_v1" "database_ca" {
  count = var.manage_app_secret ? 1 : 0

  metadata {
    name      = local.database_ca_config_map
    namespace = kubernetes_namespace_v1.app.metadata[0].name
    labels = {
      "app.kubernetes.io/part-of"    = "conduit"
      "app.kubernetes.io/managed-by" = "terraform"
    }
  }

  data = {
    (local.database_ca_key) = var.database_ca_bundle
  }

  lifecycle {
    precondition {
      condition     = var.database_ca_bundle != null
      error_message = "manage_app_secret needs database_ca_bundle: the URLs verify the server against it."
    }
  }
}

data "kubernetes_service_v1" "ingress_controller" {
  metadata {
    name      = "ingress-nginx-controller"
    namespace = local.ingress_namespace
  }

  depends_on = [helm_release.ingress_nginx]
}
