{{/*
Names. Object names derive from the release; the GatewayClass and the proxy
ClusterRole have fixed, cluster-wide names because the controller refers to
them by name.
*/}}
{{- define "pingora-waypoint.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pingora-waypoint.fullname" -}}
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

{{/* The controller's ServiceAccount, Deployment, Service and RBAC objects. */}}
{{- define "pingora-waypoint.controller.name" -}}
{{- printf "%s-controller" (include "pingora-waypoint.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The ClusterRole every waypoint's ServiceAccount is bound to. The controller
creates those bindings (pingora-waypoint:<namespace>:<gateway>) and may bind
this role only (the `bind` rule in its own ClusterRole names it).
*/}}
{{- define "pingora-waypoint.proxyRole" -}}
pingora-waypoint-proxy
{{- end }}

{{- define "pingora-waypoint.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pingora-waypoint.labels" -}}
helm.sh/chart: {{ include "pingora-waypoint.chart" . }}
{{ include "pingora-waypoint.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pingora-waypoint
{{- end }}

{{- define "pingora-waypoint.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pingora-waypoint.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pingora-waypoint.controller.selectorLabels" -}}
{{ include "pingora-waypoint.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The controller's image. */}}
{{- define "pingora-waypoint.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The image the controller puts into waypoint Deployments (--image). */}}
{{- define "pingora-waypoint.waypointImage" -}}
{{- $repo := default .Values.image.repository .Values.waypoint.image.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.waypoint.image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
