{{/*
Pod and container security contexts that meet Pod Security "restricted" (non-root, no privilege
escalation, all capabilities dropped, RuntimeDefault seccomp) plus a read-only root filesystem;
workloads mount emptyDirs where they must write.
*/}}
{{- define "floe-common.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "floe-common.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* An image reference from {repository, tag}. */}}
{{- define "floe-common.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/*
OpenTelemetry environment for a container: where to send telemetry (global.otlpEndpoint, the
platform's collector) and the service name it reports. Renders nothing when telemetry is off.
Usage: include "floe-common.otelEnv" (list . "dagster-webserver")
*/}}
{{- define "floe-common.otelEnv" -}}
{{- $root := index . 0 -}}
{{- with ($root.Values.global | default dict).otlpEndpoint }}
- {name: OTEL_EXPORTER_OTLP_ENDPOINT, value: {{ . | quote }}}
- {name: OTEL_SERVICE_NAME, value: {{ index $ 1 | quote }}}
- {name: OTEL_RESOURCE_ATTRIBUTES, value: {{ printf "deployment.environment=%s" ($root.Values.global.environment | default "unset") | quote }}}
{{- end }}
{{- end -}}
