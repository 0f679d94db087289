{{/*
Names and labels shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "chat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of every resource: the release name, plus the chart name
unless the release name already contains it. Kept to 50 characters so that
"-realtime" and similar suffixes still fit in 63.
*/}}
{{- define "chat.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "chat.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "chat.labels" -}}
helm.sh/chart: {{ include "chat.chart" . }}
{{ include "chat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chat
{{- end }}

{{/* Labels that select the release's pods. */}}
{{- define "chat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one component's resources. Call with (dict "root" $ "component" "gateway").
*/}}
{{- define "chat.componentLabels" -}}
{{ include "chat.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component. Call with (dict "root" $ "component" "gateway"). */}}
{{- define "chat.componentSelectorLabels" -}}
{{ include "chat.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The ServiceAccount of the chat pods. */}}
{{- define "chat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chat.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference of a component. Call with (dict "root" $ "image" .Values.gateway.image). */}}
{{- define "chat.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The ConfigMap of the shared CHAT_* environment. */}}
{{- define "chat.configName" -}}
{{- printf "%s-config" (include "chat.fullname" .) }}
{{- end }}

{{/* The chart's own Secret. */}}
{{- define "chat.secretName" -}}
{{- include "chat.fullname" . }}
{{- end }}

{{/* The Secret that holds jwt-secret and api-keys. */}}
{{- define "chat.authSecretName" -}}
{{- default (include "chat.secretName" .) .Values.auth.existingSecret }}
{{- end }}

{{/*
Whether the chart's Secret carries a jwt-secret: one was given as a value. The
chart never makes one up (a random value per render would change on every
`helm template` or GitOps sync, and replicas would disagree).
*/}}
{{- define "chat.managesJwtSecret" -}}
{{- if and (not .Values.auth.existingSecret) .Values.auth.jwtSecret }}true{{ end }}
{{- end }}

{{/* Name of the in-chart Redis (its StatefulSet and Service). */}}
{{- define "chat.redisName" -}}
{{- printf "%s-redis" (include "chat.fullname" .) }}
{{- end }}

{{/* Whether CHAT_REDIS_URL comes from a Secret (external Redis) rather than the ConfigMap. */}}
{{- define "chat.redisUrlFromSecret" -}}
{{- if not .Values.redis.enabled }}true{{ end }}
{{- end }}

{{/* The Secret and key that hold CHAT_REDIS_URL for an external Redis. */}}
{{- define "chat.redisSecretName" -}}
{{- default (include "chat.secretName" .) .Values.externalRedis.existingSecret }}
{{- end }}
{{- define "chat.redisSecretKey" -}}
{{- if .Values.externalRedis.existingSecret }}{{ .Values.externalRedis.existingSecretKey }}{{ else }}redis-url{{ end }}
{{- end }}

{{/* Whether the chart's Secret carries the bundled Redis's password. */}}
{{- define "chat.managesRedisPassword" -}}
{{- if and (include "chat.redisAuth" .) (not .Values.redis.auth.existingSecret) }}true{{ end }}
{{- end }}

{{/* Whether the chart renders its own Secret at all. */}}
{{- define "chat.createSecret" -}}
{{- if or (include "chat.managesJwtSecret" .) (and (not .Values.auth.existingSecret) .Values.auth.apiKeys) (and (not .Values.redis.enabled) (not .Values.externalRedis.existingSecret)) (include "chat.managesRedisPassword" .) }}true{{ end }}
{{- end }}

{{/* Stops the render on settings that cannot work, with a message that says why. */}}
{{- define "chat.validate" -}}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.url) (not .Values.externalRedis.existingSecret) }}
{{- fail "redis.enabled is false: set externalRedis.url or externalRedis.existingSecret" }}
{{- end }}
{{- if and .Values.redis.enabled (or .Values.externalRedis.url .Values.externalRedis.existingSecret) }}
{{- fail "both redis.enabled and externalRedis are set: choose one" }}
{{- end }}
{{- if not (or .Values.auth.existingSecret .Values.auth.jwtSecret .Values.auth.jwtPublicKey) }}
{{- fail "auth: set auth.existingSecret (a Secret with key jwt-secret), auth.jwtSecret or auth.jwtPublicKey; the chart does not generate a token secret (it would change on every render)" }}
{{- end }}
{{- if and (include "chat.redisAuth" .) (not .Values.redis.auth.existingSecret) (not .Values.redis.auth.password) }}
{{- fail "redis.auth.enabled: set redis.auth.existingSecret (a Secret with the password), redis.auth.password, or redis.auth.enabled=false" }}
{{- end }}
{{- end }}

{{/*
Environment shared by both servers, besides the ConfigMap: the secrets.
*/}}
{{- define "chat.secretEnv" -}}
- name: CHAT_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "chat.authSecretName" . }}
      key: jwt-secret
      optional: true
- name: CHAT_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "chat.authSecretName" . }}
      key: api-keys
      optional: true
{{- if include "chat.redisAuth" . }}
- name: CHAT_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "chat.redisPasswordSecretName" . }}
      key: {{ include "chat.redisPasswordSecretKey" . }}
{{- end }}
{{- if include "chat.redisUrlFromSecret" . }}
- name: CHAT_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "chat.redisSecretName" . }}
      key: {{ include "chat.redisSecretKey" . }}
{{- end }}
{{- end }}

{{/*
Files both servers read: the JWT public key and the Redis CA, each from its ConfigMap.
*/}}
{{- define "chat.volumeMounts" -}}
{{- if .Values.auth.jwtPublicKey }}
- name: jwt-public-key
  mountPath: /etc/chat/jwt
  readOnly: true
{{- end }}
{{- if .Values.externalRedis.caCert }}
- name: redis-ca
  mountPath: /etc/chat/redis-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "chat.volumes" -}}
{{- if .Values.auth.jwtPublicKey }}
- name: jwt-public-key
  configMap:
    name: {{ include "chat.fullname" . }}-jwt-public-key
{{- end }}
{{- if .Values.externalRedis.caCert }}
- name: redis-ca
  configMap:
    name: {{ include "chat.fullname" . }}-redis-ca
{{- end }}
{{- end }}

{{/*
The probes of a server container: the paths and port are fixed (the policy of
scripts/check-deploy.sh), the timings come from `<component>.probes`. Call with
(dict "values" .Values.gateway).
*/}}
{{- define "chat.probes" -}}
{{- $p := .values.probes -}}
startupProbe:
  httpGet:
    path: /healthz
    port: metrics
  {{- toYaml $p.startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  {{- toYaml $p.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  {{- toYaml $p.readiness | nindent 2 }}
{{- end }}

{{/*
What a server container mounts: the chart's files, then `extraVolumeMounts`.
Call with (dict "root" $ "values" .Values.gateway).
*/}}
{{- define "chat.serverVolumeMounts" -}}
{{- with include "chat.volumeMounts" .root }}
{{ . }}
{{- end }}
{{- with .values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The volumes of a server pod: the chart's, then `extraVolumes`. */}}
{{- define "chat.serverVolumes" -}}
{{- with include "chat.volumes" .root }}
{{ . }}
{{- end }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The topology spread of a server pod: `topologySpreadConstraints`, plus one across
nodes (kubernetes.io/hostname, ScheduleAnyway) when `spreadAcrossNodes` is on.
*/}}
{{- define "chat.topologySpread" -}}
{{- with .values.topologySpreadConstraints }}
{{ toYaml . }}
{{- end }}
{{- if .values.spreadAcrossNodes }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "chat.componentSelectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end }}
{{- end }}

{{/* The Secret and key of the bundled Redis's password. */}}
{{- define "chat.redisPasswordSecretName" -}}
{{- default (include "chat.secretName" .) .Values.redis.auth.existingSecret }}
{{- end }}
{{- define "chat.redisPasswordSecretKey" -}}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretKey }}{{ else }}redis-password{{ end }}
{{- end }}

{{/* Whether the bundled Redis asks for a password. */}}
{{- define "chat.redisAuth" -}}
{{- if and .Values.redis.enabled .Values.redis.auth.enabled }}true{{ end }}
{{- end }}
