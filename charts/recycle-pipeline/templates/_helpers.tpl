{{/*
Names, labels and the merge of a role over the shared worker defaults.
Templates resolve everything through these helpers once, at their top, and then only emit.
*/}}

{{/* The roles the image knows; the order is the order of the rendered Deployments. */}}
{{- define "recycle-pipeline.roles" -}}
{{- list "uploader" "analyzer" "retriever" "generator" "scheduler" | toJson -}}
{{- end -}}

{{/*
Hard time limit in seconds of the longest task each queue worker runs (the package's stage
table). A role's grace period must be longer, so a warm shutdown can finish the task in hand.
*/}}
{{- define "recycle-pipeline.taskTimeLimits" -}}
uploader: 30
analyzer: 120
retriever: 10
generator: 60
{{- end -}}

{{/* "<namePrefix>-" or nothing. */}}
{{- define "recycle-pipeline.prefix" -}}
{{- with .Values.namePrefix -}}{{ . | trunc 30 | trimSuffix "-" }}-{{- end -}}
{{- end -}}

{{/* Name of the objects all roles share (ConfigMap, Secret, service account, ...). */}}
{{- define "recycle-pipeline.fullname" -}}
{{- printf "%s%s" (include "recycle-pipeline.prefix" .) .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "recycle-pipeline.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "recycle-pipeline.configMapName" -}}
{{- printf "%s-config" (include "recycle-pipeline.fullname" .) -}}
{{- end -}}

{{- define "recycle-pipeline.secretName" -}}
{{- default (printf "%s-secrets" (include "recycle-pipeline.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "recycle-pipeline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "recycle-pipeline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "recycle-pipeline.kedaAuthenticationName" -}}
{{- default (printf "%s-rabbitmq" (include "recycle-pipeline.fullname" .)) .Values.keda.authenticationRef -}}
{{- end -}}

{{/* Selector labels shared by every role; a role adds its component. */}}
{{- define "recycle-pipeline.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "recycle-pipeline.labels" -}}
{{ include "recycle-pipeline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: recycle-pipeline
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The metadata block of an object. Call with (dict "root" $ "name" NAME), adding "component"
for a role's objects, "labels" and "annotations" for labels and annotations of the object's own.
*/}}
{{- define "recycle-pipeline.metadata" -}}
{{- $annotations := merge (dict) (default dict .annotations) (default dict .root.Values.commonAnnotations) -}}
name: {{ .name }}
namespace: {{ include "recycle-pipeline.namespace" .root }}
labels:
  {{- include "recycle-pipeline.labels" .root | nindent 2 }}
  {{- with .component }}
  app.kubernetes.io/component: {{ . }}
  {{- end }}
  {{- with .labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Image reference: a digest pins it, otherwise the tag (default: appVersion). */}}
{{- define "recycle-pipeline.image" -}}
{{- $image := .Values.image -}}
{{- $repository := $image.repository -}}
{{- if $image.registry -}}
{{- $repository = printf "%s/%s" $image.registry $image.repository -}}
{{- end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion $image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
Deep merge: maps merge key by key, any other value of "over" replaces the one in "base".
Written out rather than sprig's merge, which does not let false or 0 override a default.
Call with (dict "base" MAP "over" MAP); returns YAML.
*/}}
{{- define "recycle-pipeline.deepMerge" -}}
{{- $merged := deepCopy .base -}}
{{- range $key, $value := .over -}}
{{- $current := get $merged $key -}}
{{- if and (kindIs "map" $value) (kindIs "map" $current) -}}
{{- $_ := set $merged $key (include "recycle-pipeline.deepMerge" (dict "base" $current "over" $value) | fromYaml) -}}
{{- else -}}
{{- $_ := set $merged $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}

{{/*
The settings of one role: workerDefaults with workers.<role> merged over it, plus "role".
Call with (dict "root" $ "role" ROLE); returns YAML.
*/}}
{{- define "recycle-pipeline.worker" -}}
{{- $over := get .root.Values.workers .role | default dict -}}
{{- $merge := dict "base" .root.Values.workerDefaults "over" $over -}}
{{- $worker := include "recycle-pipeline.deepMerge" $merge | fromYaml -}}
{{- $_ := set $worker "role" .role -}}
{{- if not $worker.name -}}
{{- fail (printf "workers.%s.name: a Deployment name is required" .role) -}}
{{- end -}}
{{- if and (ne .role "scheduler") (not $worker.queues) -}}
{{- fail (printf "workers.%s.queues: a queue worker needs at least one queue" .role) -}}
{{- end -}}
{{- $timeLimit := get (include "recycle-pipeline.taskTimeLimits" . | fromYaml) .role | default 0 | int -}}
{{- $grace := $worker.terminationGracePeriodSeconds | int -}}
{{- if le $grace $timeLimit -}}
{{- $message := "workers.%s.terminationGracePeriodSeconds: %d must be longer than the role's %d s task time limit" -}}
{{- fail (printf $message .role $grace $timeLimit) -}}
{{- end -}}
{{- toYaml $worker -}}
{{- end -}}

{{/* Deployment name of one merged worker. Call with (dict "root" $ "worker" WORKER). */}}
{{- define "recycle-pipeline.workerName" -}}
{{- printf "%s%s" (include "recycle-pipeline.prefix" .root) .worker.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The autoscaler a merged worker uses: "keda", "hpa" or "". Fails when both are on.
Call with the merged worker.
*/}}
{{- define "recycle-pipeline.autoscaler" -}}
{{- if ne .role "scheduler" -}}
{{- $keda := .autoscaling.keda.enabled -}}
{{- $hpa := .autoscaling.hpa.enabled -}}
{{- if and $keda $hpa -}}
{{- fail (printf "workers.%s.autoscaling: keda.enabled and hpa.enabled are both true; choose one" .role) -}}
{{- else if $keda -}}
keda
{{- else if $hpa -}}
hpa
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A PDB count: "50%" stays a string, "2" becomes the integer 2. */}}
{{- define "recycle-pipeline.intOrPercent" -}}
{{- if hasSuffix "%" . -}}{{ . | quote }}{{- else -}}{{ . | int }}{{- end -}}
{{- end -}}

{{/* A value as an environment string: whole numbers without an exponent (10485760, not 1.048576e+07). */}}
{{- define "recycle-pipeline.envString" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}
