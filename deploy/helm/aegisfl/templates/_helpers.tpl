{{- define "aegisfl.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aegisfl.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "aegisfl.labels" -}}
{{ include "aegisfl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The environment variable that carries one flag's value from the ConfigMap: dp-noise -> AEGIS_FLAG_DP_NOISE. */}}
{{- define "aegisfl.flagEnv" -}}
{{- printf "AEGIS_FLAG_%s" (. | upper | replace "-" "_") -}}
{{- end -}}

{{- define "aegisfl.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "aegisfl.fullname" .)) -}}
{{- end -}}

{{- define "aegisfl.keysSecret" -}}
{{- .Values.keys.existingSecret | default (printf "%s-keys" (include "aegisfl.fullname" .)) -}}
{{- end -}}

{{- define "aegisfl.hasTls" -}}
{{- if or .Values.tls.existingSecret (and .Values.tls.cert .Values.tls.key) -}}true{{- end -}}
{{- end -}}

{{- define "aegisfl.scheme" -}}
{{- if .Values.tls.serveInPod -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
