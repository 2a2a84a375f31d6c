{{/*
A single-container Deployment and its Service, for the platform's simple components. The
component passes what differs: name, image, ports, env, probes and extra mounts.
Usage: include "floe-common.simpleWorkload" (dict "root" . "component" "polaris" "image" ...
  "ports" (list (dict "name" "http" "port" 8181)) "env" <yaml string> "probePort" "health"
  "readinessPath" "/q/health/ready" "livenessPath" "/q/health/live" "args" (list ...)
  "resources" .Values.resources)
*/}}
{{- define "floe-common.simpleWorkload" -}}
{{- $root := .root -}}
{{- $name := include "floe-common.name" (list $root .component) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "floe-common.labels" (list $root .component) | nindent 4 }}
spec:
  replicas: {{ .replicas | default 1 }}
  selector:
    matchLabels:
      {{- include "floe-common.selectorLabels" (list $root .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "floe-common.labels" (list $root .component) | nindent 8 }}
      {{- with .annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      automountServiceAccountToken: false
      securityContext:
        {{- include "floe-common.podSecurityContext" $root | nindent 8 }}
      {{- include "floe-common.scheduling" $root.Values | nindent 6 }}
      containers:
        - name: {{ .component }}
          image: {{ include "floe-common.image" .image }}
          imagePullPolicy: {{ .image.pullPolicy }}
          {{- with .args }}
          args: {{ toJson . }}
          {{- end }}
          ports:
            {{- range .ports }}
            - {name: {{ .name }}, containerPort: {{ .port }}, protocol: TCP}
            {{- end }}
          {{- with .env }}
          env:
            {{- . | nindent 12 }}
          {{- end }}
          readinessProbe:
            httpGet: {path: {{ .readinessPath }}, port: {{ .probePort }}}
            initialDelaySeconds: 5
            periodSeconds: 10
          livenessProbe:
            httpGet: {path: {{ .livenessPath }}, port: {{ .probePort }}}
            initialDelaySeconds: 30
            periodSeconds: 20
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            {{- include "floe-common.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - {name: tmp, emptyDir: {}}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "floe-common.labels" (list $root .component) | nindent 4 }}
spec:
  selector:
    {{- include "floe-common.selectorLabels" (list $root .component) | nindent 4 }}
  ports:
    # protocol spelled out: server-side apply on Kubernetes < 1.22 needs the list key.
    {{- range .ports }}
    - {name: {{ .name }}, port: {{ .port }}, targetPort: {{ .name }}, protocol: TCP}
    {{- end }}
{{- end -}}
