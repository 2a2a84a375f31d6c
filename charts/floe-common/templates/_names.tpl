{{/*
The release-scoped name of a component: "<release>-<component>", cut to 63 characters, since
Kubernetes names (and the labels that repeat them) allow no more.
Usage: include "floe-common.name" (list . "webserver")
*/}}
{{- define "floe-common.name" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- printf "%s-%s" $root.Release.Name $component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The chart label value: name-version, with "+" (illegal in labels) replaced. */}}
{{- define "floe-common.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}
