{{/* The selector of one component of this release, as the component subcharts label it. */}}
{{- define "floe-platform.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Component -> replicas, for the workloads that may run more than one pod. */}}
{{- define "floe-platform.scalable" -}}
{{- $scalable := dict -}}
{{- if .Values.dagster.enabled -}}
{{- $webserver := .Values.dagster.webserver -}}
{{- $replicas := ternary $webserver.autoscaling.minReplicas $webserver.replicas $webserver.autoscaling.enabled -}}
{{- $_ := set $scalable "dagster-webserver" (int $replicas) -}}
{{- $_ := set $scalable "dagster-user-code" (int .Values.dagster.userCode.replicas) -}}
{{- end -}}
{{- if .Values.otel.enabled -}}
{{- $_ := set $scalable "otel-collector" (int .Values.otel.replicas) -}}
{{- end -}}
{{- toJson $scalable -}}
{{- end -}}
