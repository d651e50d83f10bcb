output "address" {
  description = "Host name of the database (the app's db_host Spin variable, which allowed_outbound_hosts is built from)."
  value       = local.database_address
}

output "port" {
  description = "Port of the database (the app's db_port Spin variable)."
  value       = local.database_port
}

output "app_database_url" {
  description = "URL for the API (role conduit_app), TLS as ssl_mode says (by default the server's certificate and name verified)."
  value       = "postgres://conduit_app:${random_password.app.result}@${local.database_address}:${local.database_port}/conduit?${local.tls_query}"
  sensitive   = true
}

output "owner_database_url" {
  description = "URL for migrations (role conduit_owner), TLS as ssl_mode says."
  value       = "postgres://conduit_owner:${random_password.owner.result}@${local.database_address}:${local.database_port}/conduit?${local.tls_query}"
  sensitive   = true
}

output "ca_bundle_pem" {
  description = "The RDS CA bundle (PEM) the URLs' sslrootcert names; the pods get it as a ConfigMap."
  value       = data.http.ca_bundle.response_body
}

output "app_password" {
  description = "Password of conduit_app, for the one-time init script (psql -v app_password=...)."
  value       = random_password.app.result
  sensitive   = true
}

output "owner_password" {
  description = "Password of conduit_owner, for the one-time init script (psql -v owner_password=...)."
  value       = random_password.owner.result
  sensitive   = true
}

output "master_username" {
  description = "Master user, which runs the one-time init script."
  value       = aws_db_instance.postgres.username
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret holding the RDS-managed master password."
  value       = aws_db_instance.postgres.master_user_secret[0].secret_arn
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.database.id
}
