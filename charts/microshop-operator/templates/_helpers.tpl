{{- define "operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "operator.labels" -}}
{{ include "operator.selectorLabels" . }}
app.kubernetes.io/part-of: microshop
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "operator.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "operator.fullname" .) -}}
{{- end -}}

{{/* The namespaces served (JSON list): watchNamespaces, else the release namespace. */}}
{{- define "operator.watchNamespaces" -}}
{{- .Values.watchNamespaces | default (list .Release.Namespace) | toJson -}}
{{- end -}}

{{/*
Rules for reconciling Shops: exactly the calls the operator makes (tests/operator/test_rbac.py derives
them from the operator test suite and fails when these grant more or less). Keep in step with
microshop_operator.reconcile.PRUNABLE_KINDS and charts/microshop/templates.
*/}}
{{- define "operator.shopRules" -}}
- apiGroups: [microshop.dev]
  # kopf watches Shops and patches its finalizer; the resync reads each Shop.
  resources: [shops]
  verbs: [get, list, watch, patch]
- apiGroups: [microshop.dev]
  resources: [shops/status]
  verbs: [patch]
- apiGroups: [microshop.dev]
  # Children name their Shop with blockOwnerDeletion: clusters enforcing ownerReference permissions require this.
  resources: [shops/finalizers]
  verbs: [update]
- apiGroups: [""]
  # The Shop's JWT, admin and infra Secrets: read, created when missing, the infra one deleted with the
  # volumes (spec.deletion), and updated only to add keys a newer chart references to an infra Secret
  # the operator made itself (existing values never change). Never listed or patched.
  resources: [secrets]
  verbs: [get, create, update, delete]
- apiGroups: [""]
  # Deleted with the Shop only when spec.deletion.deletePersistentVolumeClaims is true.
  resources: [persistentvolumeclaims]
  verbs: [list, delete]
- apiGroups: [apps]
  # Watched: a change of a workload wakes its Shop's reconcile.
  resources: [deployments, statefulsets]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  # Applied (server-side apply creates: create + patch), listed and deleted when pruned.
  resources: [services]
  verbs: [list, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, networkpolicies]
  verbs: [list, create, patch, delete]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [list, create, patch, delete]
- apiGroups: [""]
  # The shop's Grafana dashboards (spec.dashboards.enabled).
  resources: [configmaps]
  verbs: [list, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  # spec.metrics.serviceMonitor / podMonitor (Prometheus Operator).
  resources: [servicemonitors, podmonitors]
  verbs: [list, create, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
