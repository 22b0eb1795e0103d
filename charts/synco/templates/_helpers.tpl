{{/*
Names. Everything is named "<fullname>-<component>", with fullname truncated so
that the longest suffix ("-operator-leader-election", 25 characters, on a Role)
still fits 63 characters where Kubernetes needs DNS labels.
*/}}

{{- define "synco.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-synco", or the release name alone when it already contains the chart name. */}}
{{- define "synco.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<component>", truncated to 63. Call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "synco.componentName" -}}
{{- printf "%s-%s" (include "synco.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "synco.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The one labels helper: every object gets these. */}}
{{- define "synco.labels" -}}
helm.sh/chart: {{ include "synco.chart" . }}
app.kubernetes.io/name: {{ include "synco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: synco
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of a component's objects: the shared ones plus the component. */}}
{{- define "synco.componentLabels" -}}
{{ include "synco.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels: stable across upgrades (never the version or chart). */}}
{{- define "synco.selectorLabels" -}}
app.kubernetes.io/name: {{ include "synco.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "synco.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "synco.componentName" (dict "ctx" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "synco.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "synco.componentName" (dict "ctx" . "component" "gateway")) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "synco.operator.leaseName" -}}
{{- default (include "synco.componentName" (dict "ctx" . "component" "operator")) .Values.operator.leaderElection.leaseName }}
{{- end }}

{{/* repository:tag or repository@digest. Call with (dict "ctx" $ "image" .Values.x.image). */}}
{{- define "synco.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* Default anti-affinity: prefer one replica per node. */}}
{{- define "synco.spreadAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "synco.selectorLabels" . | nindent 12 }}
{{- end }}

{{/* Environment shared by both binaries: logs and traces. */}}
{{- define "synco.telemetryEnv" -}}
- name: RUST_LOG
  value: {{ .ctx.Values.telemetry.logLevel | quote }}
- name: SYNCO_LOG_JSON
  value: {{ .ctx.Values.telemetry.logJson | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "synco-%s" .component | quote }}
{{- with .ctx.Values.telemetry.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
Refuse combinations the schema cannot explain well, with a message that says
what to do. Included by NOTES.txt and by every Deployment, so `helm template`
and `helm install` both fail early.
*/}}
{{- define "synco.validate" -}}
{{- if not (or .Values.operator.enabled .Values.gateway.enabled .Values.crds.enabled .Values.admission.enabled) }}
{{- fail "nothing to install: crds, admission, operator and gateway are all disabled" }}
{{- end }}
{{- $g := .Values.gateway }}
{{- if $g.enabled }}
{{- if eq $g.database.type "sqlite" }}
{{- if gt (int $g.replicas) 1 }}
{{- fail (printf "gateway.database.type=sqlite keeps usage in one SQLite file on one volume, so it needs gateway.replicas=1 (got %d); use gateway.database.type=postgres for more replicas" (int $g.replicas)) }}
{{- end }}
{{- if $g.autoscaling.enabled }}
{{- fail "gateway.database.type=sqlite keeps usage in one SQLite file on one volume, so it cannot autoscale: set gateway.autoscaling.enabled=false, or use gateway.database.type=postgres" }}
{{- end }}
{{- else }}
{{- if not $g.database.postgres.existingSecret }}
{{- fail "gateway.database.type=postgres needs gateway.database.postgres.existingSecret: the Secret holding the postgres:// URL" }}
{{- end }}
{{- end }}
{{- if eq $g.auth.mode "hs256" }}
{{- if not $g.auth.hs256.existingSecret }}
{{- fail "gateway.auth.mode=hs256 needs gateway.auth.hs256.existingSecret: the Secret holding the HS256 key" }}
{{- end }}
{{- else }}
{{- if eq (empty $g.auth.jwks.url) (empty $g.auth.jwks.configMap.name) }}
{{- fail "gateway.auth.mode=jwks needs exactly one of gateway.auth.jwks.url and gateway.auth.jwks.configMap.name" }}
{{- end }}
{{- end }}
{{- if and $g.autoscaling.enabled (gt (int $g.autoscaling.minReplicas) (int $g.autoscaling.maxReplicas)) }}
{{- fail (printf "gateway.autoscaling.minReplicas (%d) is more than maxReplicas (%d)" (int $g.autoscaling.minReplicas) (int $g.autoscaling.maxReplicas)) }}
{{- end }}
{{- end }}
{{- if and (has "Deny" .Values.admission.validationActions) (has "Warn" .Values.admission.validationActions) }}
{{- fail "admission.validationActions may not hold both Deny and Warn (the API server refuses it): use [Deny] or [Warn, Audit]" }}
{{- end }}
{{- if and .Values.telemetry.serviceMonitor.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) }}
{{- fail "telemetry.serviceMonitor.enabled=true but this cluster has no monitoring.coreos.com/v1 ServiceMonitor (install prometheus-operator's CRDs first, or pass --api-versions monitoring.coreos.com/v1/ServiceMonitor to helm template)" }}
{{- end }}
{{- end }}
