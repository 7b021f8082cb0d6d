{{/*
The components: everything that differs between the six services, as data (the OpenTelemetry demo
chart's way). The generic templates (services.yaml, networkpolicies.yaml and the helpers in
_helpers.tpl) loop over it and name no service; tests/charts/test_render.py checks that they don't.
This is architecture, not configuration, so it lives here and not in values (values mirror the Shop
spec, which users edit; what a service needs to run is not theirs to change).
*/}}

{{/*
What each service talks to: files/topology.yaml, generated from the service registry
(services/shopkit/registry.py) and each app's EventBus by `python -m devtools.generate` (make generate);
tests/unit/test_generated.py fails when it is stale. Per service:
  port        the HTTP port of each service (docs/architecture.md, "Services")
  public      the entry point: its NetworkPolicy admits any client (Ingress / Gateway API data planes live
              outside the release); every other service admits only its callers
  callers     services that call it over HTTP (the gateway proxies to every service; every service fetches
              customers' JWKS; orders reads the catalog from products)
  infra       which managed infrastructure it may reach (NetworkPolicies); tests/charts/test_network_topology.py
              checks it against what each app connects to. A service listing mongodb gets its own database
              user (readWrite on the database named after it), one listing rabbitmq its own broker user
  consumes    the topic exchanges it consumes from, and
  publishes   those it publishes to (both from its app's EventBus), and
  permissions its broker user's {configure, write, read} regexes, computed by the EventBus itself
              (shopkit.messaging.topology, Topology.permissions); tests/charts/test_infra_access.py checks them
  upstreams   (the entry point) the services it forwards to, in the order of its settings
*/}}
{{- define "microshop.topology" -}}
{{- .Files.Get "files/topology.yaml" -}}
{{- end -}}

{{/* The services that use one kind of managed infrastructure (each gets its own user there), sorted. */}}
{{- define "microshop.infraUsers" -}}
{{- $topology := include "microshop.topology" .root | fromYaml -}}
{{- $users := list -}}
{{- range $name := keys $topology | sortAlpha -}}
{{- if has $.kind (index $topology $name).infra -}}{{- $users = append $users $name -}}{{- end -}}
{{- end -}}
{{- toJson $users -}}
{{- end -}}

{{/*
One service's RabbitMQ permissions: {configure, write, read} regexes, as its EventBus states them
(precomputed in files/topology.yaml; never the default exchange).
*/}}
{{- define "microshop.rabbitmq.permissions" -}}
{{- toJson (index (include "microshop.topology" .root | fromYaml) .name).permissions -}}
{{- end -}}

{{/*
Env every service gets after its infrastructure URLs: services verify JWTs themselves, against the
customers service's JWKS. Argument: the chart's root context.
*/}}
{{- define "microshop.sharedEnv" -}}
- name: MICROSHOP_JWKS_URL
  value: {{ printf "%s/auth/jwks" (include "microshop.url" (dict "root" . "name" "customers")) | quote }}
{{- end -}}

{{/*
What one service's pod adds to the generic one, rendered with the release's values. Argument: the
chart's root context. Per component, each key optional:
  env             MICROSHOP_* entries after the shared ones (services.<name>.env still wins on a clash);
                  names its Settings class reads (tests/charts/test_env_contract.py)
  podAnnotations  checksums that restart the pods when a value they read only at start-up changes
  volumes         pod volumes besides the writable /tmp every service has
  volumeMounts    their mounts in the service's container
*/}}
{{- define "microshop.componentPods" -}}
{{- $root := . -}}
{{- $v := .Values -}}
gateway:
  env:
    {{- range $upstream := (get (include "microshop.topology" $root | fromYaml) "gateway").upstreams }}
    - name: {{ printf "MICROSHOP_%s_URL" (upper $upstream) }}
      value: {{ include "microshop.url" (dict "root" $root "name" $upstream) | quote }}
    {{- end }}
    - name: MICROSHOP_ANALYTICS_ENABLED
      value: {{ $v.services.analytics.enabled | quote }}
    - name: MICROSHOP_RATE_LIMIT_REQUESTS
      value: {{ $v.rateLimit.requests | int64 | quote }}
    - name: MICROSHOP_RATE_LIMIT_WINDOW_SECONDS
      value: {{ $v.rateLimit.windowSeconds | int64 | quote }}
    {{- /* Behind an Ingress or a Gateway the client address is in X-Forwarded-For; rate limits need it. */}}
    - name: MICROSHOP_TRUST_FORWARDED_FOR
      value: {{ or $v.ingress.enabled $v.httpRoute.enabled | quote }}
customers:
  env:
    - name: MICROSHOP_JWT_PRIVATE_KEY_FILE
      value: /var/run/secrets/microshop/jwt/private.pem
    - name: MICROSHOP_ACCESS_TOKEN_TTL_SECONDS
      value: {{ $v.auth.accessTokenTtlSeconds | int64 | quote }}
    - name: MICROSHOP_REFRESH_TOKEN_TTL_SECONDS
      value: {{ $v.auth.refreshTokenTtlSeconds | int64 | quote }}
    {{- with $v.auth.passwordHashing }}
    - name: MICROSHOP_PASSWORD_HASH_CONCURRENCY
      value: {{ .concurrency | int64 | quote }}
    - name: MICROSHOP_PASSWORD_HASH_MAX_WAIT_SECONDS
      value: {{ .maxWaitSeconds | quote }}
    - name: MICROSHOP_PASSWORD_HASH_MEMORY_KIB
      value: {{ .memoryKiB | int64 | quote }}
    - name: MICROSHOP_PASSWORD_HASH_TIME_COST
      value: {{ .timeCost | int64 | quote }}
    - name: MICROSHOP_PASSWORD_HASH_PARALLELISM
      value: {{ .parallelism | int64 | quote }}
    {{- end }}
    - name: MICROSHOP_ADMIN_EMAIL
      value: {{ $v.auth.adminSecret.email | quote }}
    - name: MICROSHOP_ADMIN_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ include "microshop.adminSecretName" $root }}
          key: password
  podAnnotations:
    # A changed admin email restarts customers so the first-admin bootstrap sees it.
    checksum/admin-email: {{ $v.auth.adminSecret.email | sha256sum | trunc 16 | quote }}
  volumes:
    - name: jwt-key
      secret:
        secretName: {{ include "microshop.jwtSecretName" $root }}
        defaultMode: 0440
        items:
          - {key: private.pem, path: private.pem}
  volumeMounts:
    - {name: jwt-key, mountPath: /var/run/secrets/microshop/jwt, readOnly: true}
orders:
  env:
    - name: MICROSHOP_PRODUCTS_URL
      value: {{ include "microshop.url" (dict "root" $root "name" "products") | quote }}
{{- end -}}

{{/* One service's entry of microshop.componentPods (a dict; empty when it adds nothing). */}}
{{- define "microshop.componentPod" -}}
{{- toYaml (get (include "microshop.componentPods" .root | fromYaml) .name | default dict) -}}
{{- end -}}
