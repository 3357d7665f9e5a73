{{/* Chart name, truncated to 63 characters (DNS label). */}}
{{- define "agentops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of namespaced objects: <release>-<chart>, or the release alone when it contains the chart name. */}}
{{- define "agentops.fullname" -}}
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

{{/*
Name of a cluster-scoped object: "<release>-" + its name in manifests/ (e.g. agentops-approver ->
<release>-agentops-approver). Always longer than the manifests/ name, so a release never collides
with `kubectl apply -f manifests/`, and distinct releases never collide with each other.
Usage: include "agentops.clusterName" (list . "agentops-approver")
*/}}
{{- define "agentops.clusterName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" $root.Release.Name (index . 1) }}
{{- end }}

{{- define "agentops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release (add app.kubernetes.io/component yourself). */}}
{{- define "agentops.baseLabels" -}}
helm.sh/chart: {{ include "agentops.chart" . }}
app.kubernetes.io/name: {{ include "agentops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentops
{{- end }}

{{/* Labels of the operator's own objects (Deployment, ServiceAccount, Service, its RBAC). */}}
{{- define "agentops.labels" -}}
{{ include "agentops.baseLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels that select the operator pod. */}}
{{- define "agentops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "agentops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agentops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Operator image: repository@digest when a digest is set, else repository:tag (default appVersion). */}}
{{- define "agentops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}
