{{/*
The components: everything that differs between the six services, as data (the OpenTelemetry demo
chart's way). The generic templates (services.yaml, networkpolicies.yaml and the helpers in
_helpers.tpl) loop over it and name no service; tests/charts/test_render.py checks that they don't.
This is architecture, not configuration, so it lives here and not in values (values mirror the Shop
spec, which users edit; what a service needs to run is not theirs to change).
*/}}

{{/*
What each service talks to (static: other templates read it often, so it is cheap to parse):
  port     the HTTP port of each service (docs/architecture.md, "Services")
  public   the entry point: its NetworkPolicy admits any client (Ingress / Gateway API data planes live
           outside the release); every other service admits only its callers
  callers  services that call it over HTTP (the gateway proxies to every service; every service fetches
           customers' JWKS; orders reads the catalog from products)
  infra    which managed infrastructure it may reach (NetworkPolicies); tests/charts/test_network_topology.py
           checks it against what each app connects to
*/}}
{{- define "microshop.topology" -}}
gateway:   {port: 8000, public: true, callers: [],                                    infra: [redis]}
customers: {port: 8001, callers: [gateway, products, orders, alerts, analytics],     infra: [mongodb, redis]}
products:  {port: 8002, callers: [gateway, orders],                                  infra: [mongodb, redis, rabbitmq]}
orders:    {port: 8003, callers: [gateway],                                          infra: [mongodb, rabbitmq]}
alerts:    {port: 8004, callers: [gateway],                                          infra: [mongodb, redis, rabbitmq]}
analytics: {port: 8005, callers: [gateway],                                          infra: [mongodb, redis, rabbitmq]}
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
    {{- range $upstream := list "customers" "products" "orders" "alerts" "analytics" }}
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
    - name: MICROSHOP_PASSWORD_HASH_QUEUE
      value: {{ .queue | int64 | quote }}
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
