{{/*
Resource names are fixed (conduit-api, postgres, conduit-migrate): the
database host, the Secrets and the Ingress refer to them by these names, as
the Kustomize overlays do. One release per namespace.
*/}}

{{- define "conduit.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: conduit
{{- end }}

{{/* Pods of the API, whichever runtime runs them. */}}
{{- define "conduit.apiSelectorLabels" -}}
app.kubernetes.io/name: conduit
app.kubernetes.io/component: api
{{- end }}

{{- define "conduit.postgresSelectorLabels" -}}
app.kubernetes.io/name: postgres
app.kubernetes.io/component: database
{{- end }}

{{- define "conduit.migrateLabels" -}}
app.kubernetes.io/name: conduit
app.kubernetes.io/component: migrate
{{- end }}

{{- define "conduit.backupLabels" -}}
app.kubernetes.io/name: conduit
app.kubernetes.io/component: backup
{{- end }}

{{/* Host and port the component may connect to (allowed_outbound_hosts). */}}
{{- define "conduit.dbHost" -}}
{{- if eq .Values.database.mode "internal" }}postgres{{ else }}{{ required "database.external.host is required when database.mode is external" .Values.database.external.host }}{{ end }}
{{- end }}

{{- define "conduit.dbPort" -}}
{{- if eq .Values.database.mode "internal" }}5432{{ else }}{{ .Values.database.external.port }}{{ end }}
{{- end }}

{{/*
ConfigMap with the external database's CA bundle that wasmhost pods mount
at /etc/conduit/db-ca/ (the sslrootcert directory of the URLs); empty with
the internal database or without a bundle.
*/}}
{{- define "conduit.dbCaBundleConfigMap" -}}
{{- if eq .Values.database.mode "external" }}{{ .Values.database.external.caBundleConfigMap }}{{ end }}
{{- end }}

{{/* Port the API pods serve on: wasmhost 3000, the Spin shim 80. */}}
{{- define "conduit.apiPort" -}}
{{- if eq .Values.executor "spinkube" }}80{{ else }}3000{{ end }}
{{- end }}

{{- define "conduit.validate" -}}
{{- if and .Values.backup.enabled (eq .Values.backup.target "s3") }}
{{- if or (not .Values.backup.s3.bucket) (not .Values.backup.s3.roleArn) (not .Values.backup.s3.region) }}
{{- fail "backup.target s3 needs backup.s3.bucket, backup.s3.region and backup.s3.roleArn (terraform output backup_bucket, backup_role_arn)" }}
{{- end }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%v) must not exceed autoscaling.maxReplicas (%v)" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- range $name, $tag := dict "image.host.tag" .Values.image.host.tag "image.spinApp.tag" .Values.image.spinApp.tag "postgres.image.tag" .Values.postgres.image.tag }}
{{- if eq $tag "latest" }}
{{- fail (printf "%s must pin a version, not latest: rollbacks and rollouts need an immutable image" $name) }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled .Values.ingress.tls.enabled (not .Values.ingress.host) }}
{{- fail "ingress.tls.enabled needs ingress.host (the certificate's name)" }}
{{- end }}
{{- if and .Values.ingress.enabled .Values.ingress.tls.enabled (hasPrefix "*." .Values.ingress.host) (ne .Values.ingress.tls.issuer "existing-secret") }}
{{- fail "a wildcard ingress.host needs ingress.tls.issuer existing-secret: the Let's Encrypt issuers prove a name over HTTP-01, which cannot cover a wildcard" }}
{{- end }}
{{- with .Values.telemetry }}
{{- if .otlpEndpoint }}
{{- if and $.Values.networkPolicy.enabled (not (or .collectorNamespace .collectorCidr)) }}
{{- fail "telemetry.otlpEndpoint needs telemetry.collectorNamespace or telemetry.collectorCidr: the NetworkPolicies let the API pods send only there" }}
{{- end }}
{{- if eq $.Values.executor "spinkube" }}
{{- if not $.Values.spinkube.executor.create }}
{{- fail "telemetry.otlpEndpoint with executor spinkube is set on the SpinAppExecutor, so it needs spinkube.executor.create" }}
{{- end }}
{{- if or (ne .protocol "http/protobuf") .serviceName .sampler .samplerArg }}
{{- fail "telemetry.protocol, serviceName, sampler and samplerArg apply to the container executor only: a SpinAppExecutor passes only the endpoint to Spin" }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq .Values.executor "spinkube") (or .Values.monitoring.podMonitor.enabled .Values.monitoring.prometheusRule.enabled) }}
{{- fail "monitoring.podMonitor and monitoring.prometheusRule need executor container: the alerts are on wasmhost's metrics, and Spin has no /metrics port" }}
{{- end }}
{{- end }}

{{/* The port of telemetry.otlpEndpoint: its own, else the scheme's. */}}
{{- define "conduit.collectorPort" -}}
{{- $url := urlParse .Values.telemetry.otlpEndpoint }}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" $url.host) }}
{{- if $port }}{{ $port }}{{ else if eq $url.scheme "https" }}443{{ else }}80{{ end }}
{{- end }}
