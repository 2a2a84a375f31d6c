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

{{/*
Every object's labels: the standard app.kubernetes.io set, the environment, then global.labels
for keys the standard set does not already hold (a key must appear once).
*/}}
{{- define "floe-common.labels" -}}
{{- $root := index . 0 -}}
{{- $global := $root.Values.global | default dict -}}
{{- $labels := dict
  "app.kubernetes.io/name" $root.Chart.Name
  "app.kubernetes.io/instance" $root.Release.Name
  "app.kubernetes.io/component" (index . 1)
  "app.kubernetes.io/version" $root.Chart.AppVersion
  "app.kubernetes.io/managed-by" $root.Release.Service
  "app.kubernetes.io/part-of" "floe"
  "helm.sh/chart" (include "floe-common.chart" $root)
  "floe.dev/environment" ($global.environment | default "unset") -}}
{{- range $key, $value := ($global.labels | default dict) }}
{{- if not (hasKey $labels $key) }}{{ $_ := set $labels $key $value }}{{ end }}
{{- end }}
{{- range $key := keys $labels | sortAlpha }}
{{ $key }}: {{ get $labels $key | toString | quote }}
{{- end }}
{{- end -}}
