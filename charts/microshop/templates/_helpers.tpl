{{/*
Names and labels. Objects are named <release>-<component>; every object carries the standard
app.kubernetes.io labels so the operator can find and prune what it rendered.
*/}}
{{- define "microshop.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "microshop.componentName" -}}
{{- printf "%s-%s" (include "microshop.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "microshop.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "microshop.labels" -}}
{{ include "microshop.selectorLabels" . }}
app.kubernetes.io/part-of: microshop
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Every pod of this release (for NetworkPolicy peers). */}}
{{- define "microshop.instanceSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "microshop.port" -}}
{{- $topology := include "microshop.topology" .root | fromYaml -}}
{{- $entry := required (printf "services.%s: unknown service (known: %s)" .name (keys $topology | sortAlpha | join ", ")) (get $topology .name) -}}
{{- $entry.port -}}
{{- end -}}

{{- define "microshop.url" -}}
{{- printf "http://%s:%s" (include "microshop.componentName" .) (include "microshop.port" .) -}}
{{- end -}}

{{- define "microshop.image" -}}
{{- $svc := index .root.Values.services .name -}}
{{- $override := $svc.image | default dict -}}
{{- $repository := $override.repository | default .root.Values.image.repository -}}
{{- $tag := $override.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- /* A repository that already names a digest or a tag (skaffold rewrites Shops that way) is used as is. */ -}}
{{- $lastSegment := regexReplaceAll "^.*/" $repository "" -}}
{{- if or (contains "@" $repository) (contains ":" $lastSegment) -}}
{{- $repository -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "microshop.jwtSecretName" -}}
{{- .Values.auth.jwtKeySecret.name | default (printf "%s-jwt" (include "microshop.fullname" .)) -}}
{{- end -}}

{{- define "microshop.adminSecretName" -}}
{{- .Values.auth.adminSecret.name | default (printf "%s-admin" (include "microshop.fullname" .)) -}}
{{- end -}}

{{- define "microshop.infraSecretName" -}}
{{- .Values.infraSecret.name | default (printf "%s-infra" (include "microshop.fullname" .)) -}}
{{- end -}}

{{/* "true" when the release runs at least one of MongoDB, Redis, RabbitMQ itself (else ""). */}}
{{- define "microshop.anyManagedInfra" -}}
{{- if or .Values.mongodb.managed .Values.redis.managed .Values.rabbitmq.managed -}}true{{- end -}}
{{- end -}}

{{/*
The helper variable that carries a managed component's password from the infra Secret into a service
container, where Kubernetes expands $(NAME) in the connection URL defined after it. No MICROSHOP_
prefix: the services never read it (tests/charts/test_env_contract.py).
*/}}
{{- define "microshop.infraPasswordEnv" -}}
{{- printf "%s_PASSWORD" (upper .) -}}
{{- end -}}

{{/* An env entry whose value is one key of the infra Secret. */}}
{{- define "microshop.infraSecretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ include "microshop.infraSecretName" .root }}
      key: {{ .key }}
{{- end -}}

{{/*
Connection URL env var for one infrastructure kind: when managed, the password from the infra Secret
(a helper variable first, then the URL that references it: Kubernetes expands $(VAR) only from entries
defined earlier in the list); when external, the whole URL from the user's Secret. A service whose
topology does not list the component gets the URL without credentials (it never connects, and the
NetworkPolicy would not let it).
*/}}
{{- define "microshop.infraEnv" -}}
{{- $cfg := index .root.Values .kind -}}
{{- if $cfg.managed }}
{{- $topology := include "microshop.topology" .root | fromYaml -}}
{{- $uses := has .kind (index $topology .name).infra -}}
{{- $passwordEnv := include "microshop.infraPasswordEnv" .kind -}}
{{- /* MongoDB and RabbitMQ: the service's own user and password; Redis: its one password. */ -}}
{{- $own := and $uses (ne .kind "redis") -}}
{{- if $uses }}
{{ include "microshop.infraSecretEnv" (dict "root" .root "env" $passwordEnv "key" (ternary (printf "%s-password-%s" .kind .name) (printf "%s-password" .kind) $own)) }}
{{- end }}
- name: {{ .env }}
  value: {{ include (printf "microshop.%s.url" .kind) (dict "root" .root "password" (ternary (printf "$(%s)" $passwordEnv) "" $uses) "user" .name) | quote }}
{{- else }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "%s.external.secretName is required when %s.managed is false" .kind .kind) $cfg.external.secretName }}
      key: {{ $cfg.external.secretKey }}
{{- end }}
{{- end -}}

{{/* The admin user of managed MongoDB and RabbitMQ (Redis has one password and no user). Services never
use it: each connects as its own user, named after it (microshop.infraUsers). */}}
{{- define "microshop.infraUser" -}}microshop{{- end -}}

{{- define "microshop.mongodb.host" -}}
{{- printf "%s-mongodb-0.%s-mongodb.%s.svc.cluster.local" (include "microshop.fullname" .) (include "microshop.fullname" .) .Release.Namespace -}}
{{- end -}}
{{/* Every replica set member as host:27017, comma-separated (mongodb.replicas of them). */}}
{{- define "microshop.mongodb.hosts" -}}
{{- $fullname := include "microshop.fullname" . -}}
{{- $hosts := list -}}
{{- range $i := until (int (.Values.mongodb.replicas | default 1)) -}}
{{- $hosts = append $hosts (printf "%s-mongodb-%d.%s-mongodb.%s.svc.cluster.local:27017" $fullname $i $fullname $.Release.Namespace) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}
{{/* The Service the services reach a RabbitMQ cluster through (rabbitmq.replicas > 1; templates/infrastructure.yaml). */}}
{{- define "microshop.rabbitmq.clientService" -}}
{{- printf "%s-rabbitmq-amqp" (include "microshop.fullname" .) -}}
{{- end -}}
{{/* URLs of the managed components for service .user; .password is a $(VAR) reference (never a literal) or
"" for none. The MongoDB user lives in the service's own database (the authSource). */}}
{{- define "microshop.mongodb.url" -}}
{{- if gt (int (.root.Values.mongodb.replicas | default 1)) 1 -}}
{{- /* A replica set: every member as a seed, writes acknowledged by a majority of them. */ -}}
{{- $hosts := include "microshop.mongodb.hosts" .root -}}
{{- if .password -}}
{{- printf "mongodb://%s:%s@%s/%s?replicaSet=rs0&w=majority&authSource=%s" .user .password $hosts .user .user -}}
{{- else -}}
{{- printf "mongodb://%s/?replicaSet=rs0&w=majority" $hosts -}}
{{- end -}}
{{- else if .password -}}
{{- printf "mongodb://%s:%s@%s:27017/%s?replicaSet=rs0&authSource=%s" .user .password (include "microshop.mongodb.host" .root) .user .user -}}
{{- else -}}
{{- printf "mongodb://%s:27017/?replicaSet=rs0" (include "microshop.mongodb.host" .root) -}}
{{- end -}}
{{- end -}}
{{- define "microshop.redis.url" -}}
{{- printf "redis://%s%s-redis:6379/0" (ternary (printf ":%s@" .password) "" (ne .password "")) (include "microshop.fullname" .root) -}}
{{- end -}}
{{- define "microshop.rabbitmq.url" -}}
{{- $host := ternary (include "microshop.rabbitmq.clientService" .root) (printf "%s-rabbitmq" (include "microshop.fullname" .root)) (gt (int (.root.Values.rabbitmq.replicas | default 1)) 1) -}}
{{- printf "amqp://%s%s:5672/" (ternary (printf "%s:%s@" .user .password) "" (ne .password "")) $host -}}
{{- end -}}

{{/*
Environment of one service: the MICROSHOP_* names its Settings class reads (services/<svc>/settings.py):
what every service needs, then its own entries from the component data (_components.tpl).
Rule (tests/charts/test_env_contract.py): every name set here is read by that service, and every setting
whose default only suits a developer machine (loopback URLs, console logs) or that replicas must share
(signing key, first admin) is set here.
*/}}
{{- define "microshop.env" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $v := $root.Values -}}
- name: MICROSHOP_HOST
  value: "0.0.0.0"
- name: MICROSHOP_PORT
  value: {{ include "microshop.port" . | quote }}
- name: MICROSHOP_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: MICROSHOP_LOG_FORMAT
  value: json
{{ include "microshop.infraEnv" (dict "root" $root "name" $name "kind" "mongodb" "env" "MICROSHOP_MONGO_URL") }}
{{ include "microshop.infraEnv" (dict "root" $root "name" $name "kind" "redis" "env" "MICROSHOP_REDIS_URL") }}
{{ include "microshop.infraEnv" (dict "root" $root "name" $name "kind" "rabbitmq" "env" "MICROSHOP_RABBITMQ_URL") }}
{{ include "microshop.sharedEnv" $root }}
{{- with $v.tracing.otlpEndpoint }}
- name: MICROSHOP_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: MICROSHOP_TRACE_SAMPLE_RATIO
  value: {{ $v.tracing.sampleRatio | toString | quote }}
{{- end }}
{{- with (include "microshop.componentPod" . | fromYaml).env }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The env list of one service: the chart's entries, then services.<name>.env (which wins on a clash). */}}
{{- define "microshop.envList" -}}
{{- $overrides := (index .root.Values.services .name).env | default dict -}}
{{- $env := list -}}
{{- range (include "microshop.env" . | fromYamlArray) -}}
{{- if not (hasKey $overrides .name) -}}{{- $env = append $env . -}}{{- end -}}
{{- end -}}
{{- range $key := keys $overrides | sortAlpha -}}
{{- $env = append $env (dict "name" $key "value" (toString (get $overrides $key))) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/* Container securityContext shared by every container this chart runs. */}}
{{- define "microshop.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Pod annotations of one service: the component's own (checksums), then the Prometheus scrape annotations
(metrics.scrapeAnnotations): every service serves /metrics on its HTTP port.
*/}}
{{- define "microshop.podAnnotations" -}}
{{- $annotations := (include "microshop.componentPod" . | fromYaml).podAnnotations | default dict -}}
{{- if .root.Values.metrics.scrapeAnnotations -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (include "microshop.port" .) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- if $annotations }}{{ toYaml $annotations }}{{ end -}}
{{- end -}}
