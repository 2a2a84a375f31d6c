{{/*
The collector's pipelines, from values: OTLP in (gRPC 4317, HTTP 4318); memory limiter,
sampling at the environment's ratio, and batching out; one exporter for the backend.
console -> debug; jaeger -> OTLP to Jaeger's collector (traces only); any other backend -> OTLP/HTTP to its
endpoint, authenticated with the header from `exporters.headersSecret`.
*/}}
{{- define "floe-otel.exporter" -}}
{{- $backend := .Values.exporters.backend -}}
{{- if eq $backend "console" -}}
debug:
  verbosity: basic
{{- else if eq $backend "jaeger" -}}
otlp/jaeger:
  endpoint: {{ .Values.exporters.endpoint | default "jaeger-collector:4317" | quote }}
  tls:
    insecure: true
{{- else -}}
otlphttp/{{ $backend }}:
  endpoint: {{ required (printf "otel.exporters.endpoint is required for the %s backend" $backend) .Values.exporters.endpoint | quote }}
  {{- if .Values.exporters.headersSecret }}
  headers:
    authorization: ${env:OTEL_EXPORTER_AUTHORIZATION}
  {{- end }}
{{- end -}}
{{- end -}}

{{- define "floe-otel.exporterName" -}}
{{- $backend := .Values.exporters.backend -}}
{{- if eq $backend "console" }}debug{{ else if eq $backend "jaeger" }}otlp/jaeger{{ else }}otlphttp/{{ $backend }}{{ end -}}
{{- end -}}

{{- define "floe-otel.config" -}}
{{- $batch := .Values.config.batch -}}
{{- $processors := list "memory_limiter" "probabilistic_sampler" "batch" -}}
extensions:
  health_check:
    endpoint: 0.0.0.0:13133
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
      http:
        endpoint: 0.0.0.0:4318
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 25
  probabilistic_sampler:
    sampling_percentage: {{ mulf .Values.config.samplingRatio 100 }}
  batch:
    send_batch_size: {{ $batch.maxExportBatchSize }}
    send_batch_max_size: {{ max $batch.maxQueueSize $batch.maxExportBatchSize }}
    timeout: {{ $batch.scheduleDelayMillis }}ms
exporters:
  {{- include "floe-otel.exporter" . | nindent 2 }}
service:
  extensions: [health_check]
  telemetry:
    logs:
      level: {{ .Values.config.logLevel | lower | replace "critical" "error" | replace "warning" "warn" }}
  pipelines:
    {{- /* Jaeger takes traces only. */}}
    {{- range ternary (list "traces") (list "traces" "metrics" "logs") (eq .Values.exporters.backend "jaeger") }}
    {{ . }}:
      receivers: [otlp]
      processors: {{ if eq . "traces" }}{{ toJson $processors }}{{ else }}["memory_limiter", "batch"]{{ end }}
      exporters: [{{ include "floe-otel.exporterName" $ | quote }}]
    {{- end }}
{{- end -}}
