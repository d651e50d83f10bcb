output "ingress_hostname" {
  description = "DNS name of the NLB in front of ingress-nginx (empty until AWS has provisioned it; a later terraform refresh fills it in)."
  value       = try(data.kubernetes_service_v1.ingress_controller.status[0].load_balancer[0].ingress[0].hostname, "")
}

output "ingress_class_name" {
  description = "IngressClass of the ingress-nginx controller (the cluster default)."
  value       = "nginx"
}

output "storage_class_name" {
  description = "Default StorageClass for PersistentVolumeClaims."
  value       = kubernetes_storage_class_v1.gp3.metadata[0].name
}

output "app_namespace" {
  description = "Namespace of the Conduit application."
  value       = kubernetes_namespace_v1.app.metadata[0].name
}

output "spin_runtime_class_name" {
  description = "RuntimeClass the containerd-shim-spin SpinAppExecutor runs Spin apps with."
  value       = "wasmtime-spin-v2"
}

output "database_ca_config_map_name" {
  description = "ConfigMap with the external database's CA bundle, mounted by the API and migration pods (null with the in-cluster database)."
  value       = var.manage_app_secret ? kubernetes_config_map_v1.database_ca[0].metadata[0].name : null
}

output "app_secret_name" {
  description = "Name of the Secret holding db_url and jwt_secret, when Terraform manages it (null otherwise)."
  value       = var.manage_app_secret ? kubernetes_secret_v1.app[0].metadata[0].name : null
}
