{{/*
Helpers of the observability objects (metrics port, monitors, alerts) and of Flower.
*/}}

{{/* The port the workers serve metrics on: metrics.port, or 0 (off) when metrics are disabled. */}}
{{- define "recycle-pipeline.metricsPort" -}}
{{- if .Values.metrics.enabled -}}
{{- .Values.metrics.port | int -}}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{/*
How Prometheus finds the pods: "serviceMonitor", "podMonitor" or "". Fails when both are on,
or when either is on while the pods serve no metrics.
*/}}
{{- define "recycle-pipeline.monitorKind" -}}
{{- $metrics := .Values.metrics -}}
{{- $service := $metrics.serviceMonitor.enabled -}}
{{- $pod := $metrics.podMonitor.enabled -}}
{{- if and $service $pod -}}
{{- fail "metrics: serviceMonitor.enabled and podMonitor.enabled are both true; choose one" -}}
{{- end -}}
{{- if and (or $service $pod) (not $metrics.enabled) -}}
{{- fail "metrics: a ServiceMonitor or PodMonitor needs metrics.enabled: true" -}}
{{- end -}}
{{- if $service -}}
serviceMonitor
{{- else if $pod -}}
podMonitor
{{- end -}}
{{- end -}}

{{/* The enabled roles, merged over the defaults, as a JSON list of workers. */}}
{{- define "recycle-pipeline.enabledWorkers" -}}
{{- $workers := list -}}
{{- range $role := include "recycle-pipeline.roles" . | fromJsonArray -}}
{{- $worker := include "recycle-pipeline.worker" (dict "root" $ "role" $role) | fromYaml -}}
{{- if $worker.enabled -}}
{{- $workers = append $workers $worker -}}
{{- end -}}
{{- end -}}
{{- toJson $workers -}}
{{- end -}}

{{/*
Selector of the pods (or metrics Services) that serve metrics: this release's objects whose
component is an enabled role, which leaves Flower out. Returns YAML of a LabelSelector.
*/}}
{{- define "recycle-pipeline.metricsSelector" -}}
{{- $roles := list -}}
{{- range $worker := include "recycle-pipeline.enabledWorkers" . | fromJsonArray -}}
{{- $roles = append $roles $worker.role -}}
{{- end -}}
matchLabels:
  {{- include "recycle-pipeline.selectorLabels" . | nindent 2 }}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values:
      {{- toYaml $roles | nindent 6 }}
{{- end -}}

{{/* Name of Flower's Deployment, Service and NetworkPolicy. */}}
{{- define "recycle-pipeline.flowerName" -}}
{{- printf "%s%s" (include "recycle-pipeline.prefix" .) .Values.flower.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Name of the Secret holding Flower's user:password list. Fails when Flower is on without any
authentication, since Flower would then show (and let anyone revoke) every task.
*/}}
{{- define "recycle-pipeline.flowerAuthSecretName" -}}
{{- $auth := .Values.flower.auth -}}
{{- if $auth.existingSecret -}}
{{- $auth.existingSecret -}}
{{- else if and $auth.username $auth.password -}}
{{- printf "%s-auth" (include "recycle-pipeline.flowerName" .) -}}
{{- else -}}
{{- fail "flower.auth: Flower needs authentication; set existingSecret, or both username and password" -}}
{{- end -}}
{{- end -}}

{{/* Flower's image reference: a digest pins it, otherwise the tag. */}}
{{- define "recycle-pipeline.flowerImage" -}}
{{- $image := .Values.flower.image -}}
{{- $repository := $image.repository -}}
{{- if $image.registry -}}
{{- $repository = printf "%s/%s" $image.registry $image.repository -}}
{{- end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository ($image.tag | toString) -}}
{{- end -}}
{{- end -}}
