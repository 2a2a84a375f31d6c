{{/*
Selector labels never change over a release's life (a Deployment's selector is immutable), so
they hold only the chart name, the instance and the component.
Usage: include "floe-common.selectorLabels" (list . "webserver")
*/}}
{{- define "floe-common.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every object's labels: the standard app.kubernetes.io set, the environment, and global.labels. */}}
{{- define "floe-common.labels" -}}
{{- $root := index . 0 -}}
{{ include "floe-common.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: floe
helm.sh/chart: {{ include "floe-common.chart" $root }}
floe.dev/environment: {{ $root.Values.global.environment | quote }}
{{- range $key, $value := $root.Values.global.labels }}
{{- if not (has $key (list "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component")) }}
{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end }}
{{- end -}}
