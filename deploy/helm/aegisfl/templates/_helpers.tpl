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

{{/* Labels that pick one tier's pods (scale-out): the chart's selector labels plus the component. */}}
{{- define "aegisfl.componentLabels" -}}
{{ include "aegisfl.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
The pod template (metadata + spec) shared by the single server and the scale-out tiers. Takes a dict:
  root: the chart context; component: "" (single server) | coordinator | gateway, which is also the --role;
  resources; grace (terminationGracePeriodSeconds); preStopSleep (seconds, gateway: the ingress drops the
  pod from its endpoints before SIGTERM closes the sockets), 0 = none.
Single server: --state-dir on the "state" volume. A tier: --role and --redis (state in Redis), no state volume.
*/}}
{{- define "aegisfl.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $component := .component -}}
metadata:
  labels:
    {{- if $component }}
    {{- include "aegisfl.componentLabels" . | nindent 4 }}
    {{- else }}
    {{- include "aegisfl.selectorLabels" $root | nindent 4 }}
    {{- end }}
  annotations:
    checksum/flags: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if $v.metrics.podAnnotations }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $v.port | quote }}
    prometheus.io/path: /metrics
    prometheus.io/scheme: {{ include "aegisfl.scheme" $root | lower }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ .grace }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: server
      image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        - --host
        - 0.0.0.0
        - --port
        - {{ $v.port | quote }}
        {{- if $component }}
        - --role
        - {{ $component }}
        # Kubernetes expands $(AEGISFL_REDIS_URL) from the container's environment (ConfigMap or Secret).
        - --redis
        - $(AEGISFL_REDIS_URL)
        {{- else }}
        - --state-dir
        - {{ $v.persistence.mountPath }}
        {{- end }}
        {{- if $v.tls.serveInPod }}
        - --tls-cert
        - /etc/aegisfl/tls/tls.crt
        - --tls-key
        - /etc/aegisfl/tls/tls.key
        {{- end }}
        {{- range $name, $value := $v.flags }}
        {{- if eq (toString $value) "true" }}
        - --{{ $name }}
        {{- else if and (not (kindIs "invalid" $value)) (ne (toString $value) "false") }}
        - --{{ $name }}
        - $({{ include "aegisfl.flagEnv" $name }})
        {{- end }}
        {{- end }}
      envFrom:
        - configMapRef:
            name: {{ include "aegisfl.fullname" $root }}-flags
      {{- if and $component $v.redis.existingSecret }}
      env:
        - name: AEGISFL_REDIS_URL
          valueFrom:
            secretKeyRef:
              name: {{ $v.redis.existingSecret }}
              key: {{ $v.redis.existingSecretKey }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ $v.port }}
      startupProbe:
        httpGet: { path: /health, port: http, scheme: {{ include "aegisfl.scheme" $root }} }
        periodSeconds: 2
        failureThreshold: 60
      livenessProbe:
        httpGet: { path: /health, port: http, scheme: {{ include "aegisfl.scheme" $root }} }
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 6
      readinessProbe:
        httpGet: { path: /health, port: http, scheme: {{ include "aegisfl.scheme" $root }} }
        periodSeconds: 5
        timeoutSeconds: 3
      {{- with .preStopSleep }}
      lifecycle:
        preStop:
          exec:
            command: ["sleep", {{ . | quote }}]
      {{- end }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        {{- if not $component }}
        - name: state
          mountPath: {{ $v.persistence.mountPath }}
        {{- end }}
        - name: keys
          mountPath: /etc/aegisfl/keys
          readOnly: true
        {{- if $v.tls.serveInPod }}
        - name: tls
          mountPath: /etc/aegisfl/tls
          readOnly: true
        {{- end }}
        # tsx caches compiled sources under the temp folder; the root filesystem is read-only.
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: keys
      secret:
        secretName: {{ include "aegisfl.keysSecret" $root }}
        defaultMode: 0400
    {{- if $v.tls.serveInPod }}
    - name: tls
      secret:
        secretName: {{ include "aegisfl.tlsSecret" $root }}
        defaultMode: 0400
    {{- end }}
    - name: tmp
      emptyDir: {}
    {{- if and (not $component) (not $v.persistence.enabled) }}
    - name: state
      emptyDir: {}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $tolerations := concat ($v.spot.enabled | ternary $v.spot.tolerations list) $v.tolerations }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- /* A tier spreads its replicas over nodes (preferred), unless the values bring their own podAntiAffinity. */}}
  {{- $spread := and $component (not (hasKey $v.affinity "podAntiAffinity")) }}
  {{- if or $v.spot.enabled $v.affinity $spread }}
  affinity:
    {{- if $v.spot.enabled }}
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        {{- range $v.spot.preferredNodeLabels }}
        - weight: 100
          preference:
            matchExpressions:
              - key: {{ .key }}
                operator: In
                values: {{ toJson .values }}
        {{- end }}
    {{- end }}
    {{- if $spread }}
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "aegisfl.componentLabels" . | nindent 16 }}
    {{- end }}
    {{- with $v.affinity }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* Refuses scale-out values that cannot work; included by the scale-out templates. */}}
{{- define "aegisfl.scaleOutChecks" -}}
{{- $v := .Values -}}
{{- if and $v.redis.url $v.redis.existingSecret }}
{{- fail "scaleOut: set redis.url or redis.existingSecret, not both" }}
{{- end }}
{{- if not (or $v.redis.url $v.redis.existingSecret) }}
{{- fail "scaleOut.enabled needs redis.url (redis://host:port of an external Redis 7 with appendonly yes; it holds the privacy ledger) or redis.existingSecret (a Secret with that URL under redis.existingSecretKey)" }}
{{- end }}
{{- if and $v.redis.url (not (regexMatch "^rediss?://[^\\s]+$" $v.redis.url)) }}
{{- fail "redis.url must be a redis:// or rediss:// URL" }}
{{- end }}
{{- range $flag := list "role" "redis" "state-dir" }}
{{- if hasKey $v.flags $flag }}
{{- fail (printf "flags.%s: the chart sets --%s itself in scale-out mode; remove it from flags" $flag $flag) }}
{{- end }}
{{- end }}
{{- if and $v.tls.serveInPod (not (include "aegisfl.hasTls" .)) }}
{{- fail "tls.serveInPod needs tls.existingSecret or tls.cert and tls.key" }}
{{- end }}
{{- $as := $v.gateway.autoscaling }}
{{- if and $as.enabled (gt (int $as.minReplicas) (int $as.maxReplicas)) }}
{{- fail "gateway.autoscaling.minReplicas must not exceed maxReplicas" }}
{{- end }}
{{- if and $as.enabled (not (dig "requests" "cpu" "" $v.gateway.resources)) }}
{{- fail "gateway.autoscaling needs gateway.resources.requests.cpu (the CPU target is a share of it)" }}
{{- end }}
{{- end -}}
