{{/* The vcluster release this add-on serves. */}}
{{- define "certguard.vclusterRelease" -}}
{{- .Values.vcluster.release | default (trimSuffix "-certguard" .Release.Name) -}}
{{- end -}}

{{/* The vcluster control plane's service account (vc-<release> in vcluster v0.19–v0.25). */}}
{{- define "certguard.serviceAccount" -}}
{{- .Values.vcluster.serviceAccount | default (printf "vc-%s" (include "certguard.vclusterRelease" .)) -}}
{{- end -}}

{{/* Name of the namespaced objects: <vcluster release>-certguard. */}}
{{- define "certguard.fullname" -}}
{{- printf "%s-certguard" (include "certguard.vclusterRelease" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The metrics Service's name. */}}
{{- define "certguard.metricsService" -}}
{{- printf "%s-certguard-metrics" (include "certguard.vclusterRelease" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of the vcluster pod. */}}
{{- define "certguard.podLabels" -}}
{{- if .Values.vcluster.podLabels -}}
{{ toYaml .Values.vcluster.podLabels }}
{{- else -}}
app: vcluster
release: {{ include "certguard.vclusterRelease" . | quote }}
{{- end -}}
{{- end -}}

{{/* Selector labels of this chart's objects. */}}
{{- define "certguard.selectorLabels" -}}
app.kubernetes.io/name: certguard
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "certguard.labels" -}}
{{ include "certguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/part-of: {{ printf "vcluster-%s" (include "certguard.vclusterRelease" .) | trunc 63 | trimSuffix "-" | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Days in "28d" as seconds. */}}
{{- define "certguard.daysToSeconds" -}}
{{- mul (trimSuffix "d" .) 86400 -}}
{{- end -}}
