{{- define "floe-dagster.name" -}}
{{- include "floe-common.name" (list (index . 0) (printf "dagster-%s" (index . 1))) -}}
{{- end -}}

{{- define "floe-dagster.serviceAccountName" -}}
{{- include "floe-common.name" (list . "dagster") -}}
{{- end -}}

{{/* The deployment graph's ServiceAccount, when it runs here (floeDeploy.enabled). */}}
{{- define "floe-dagster.deployerName" -}}
{{- include "floe-common.name" (list . "floe-deploy") -}}
{{- end -}}

{{/* How the code server and its runs reach the deployment configuration and the cluster. */}}
{{- define "floe-dagster.deployerEnv" -}}
- {name: FLOE_IN_CLUSTER, value: "true"}
- {name: FLOE_DEPLOY_CONFIG, value: /etc/floe-deploy/floe-deploy.yaml}
{{- end -}}

{{/* The Dagster instance: PostgreSQL storage, queued runs, one Kubernetes Job per run. */}}
{{- define "floe-dagster.instance" -}}
run_launcher:
  module: dagster_k8s
  class: K8sRunLauncher
  config:
    dagster_home: /opt/dagster/dagster_home
    instance_config_map: {{ include "floe-dagster.name" (list . "instance") }}
    {{- /* A run of the deployment graph deploys: it runs as the graph's ServiceAccount. */}}
    service_account_name: {{ ternary (include "floe-dagster.deployerName" .) (include "floe-dagster.serviceAccountName" .) .Values.floeDeploy.enabled }}
    job_namespace: {{ .Values.runLauncher.jobNamespace | default .Release.Namespace }}
    load_incluster_config: true
    image_pull_policy: IfNotPresent
    env_secrets: []
    resources:
      {{- toYaml .Values.runLauncher.resources | nindent 6 }}
    run_k8s_config:
      container_config:
        # A run opens the instance too.
        env:
          {{- include "floe-dagster.passwordEnv" . | nindent 10 }}
          {{- if .Values.floeDeploy.enabled }}
          {{- include "floe-dagster.deployerEnv" . | nindent 10 }}
        volume_mounts:
          - {name: floe-deploy-config, mount_path: /etc/floe-deploy, read_only: true}
          {{- end }}
      pod_spec_config:
        automount_service_account_token: {{ .Values.floeDeploy.enabled }}
        {{- if .Values.floeDeploy.enabled }}
        volumes:
          - {name: floe-deploy-config, config_map: {name: {{ .Values.floeDeploy.configMap }}}}
        {{- end }}
        security_context:
          run_as_non_root: true
          run_as_user: 10001
          seccomp_profile: {type: RuntimeDefault}
        {{- /* dagster-k8s reads a pod spec's camelCase keys as their snake_case names. */}}
        {{- include "floe-common.scheduling" .Values.runLauncher | nindent 8 }}
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
storage:
  postgres:
    postgres_db:
      # dagster-postgres drives PostgreSQL with psycopg2, its dependency; SQLAlchemy 2.1 maps a
      # bare postgresql:// to psycopg 3, which Dagster's images do not have (found on the real
      # node: the webserver and daemon failed with "No module named 'psycopg'").
      scheme: postgresql+psycopg2
      username: postgres
      password: {env: DAGSTER_PG_PASSWORD}
      hostname: {{ include "floe-common.name" (list . "postgresql") }}
      db_name: {{ .Values.postgresql.database }}
      port: 5432
telemetry:
  enabled: false
{{- end -}}

{{- define "floe-dagster.workspace" -}}
load_from:
  - grpc_server:
      host: {{ include "floe-dagster.name" (list . "user-code") }}
      port: {{ .Values.userCode.port }}
      location_name: {{ .Values.userCode.module }}
{{- end -}}

{{/*
A Dagster container's environment and mounts. Usage: include "floe-dagster.instanceEnv" .
*/}}
{{- define "floe-dagster.instanceEnv" -}}
- {name: DAGSTER_HOME, value: /opt/dagster/dagster_home}
{{- include "floe-common.otelEnv" (list . "dagster") }}
{{ include "floe-dagster.passwordEnv" . }}
{{- end -}}

{{/* The instance's storage password, from the operator's Secret, where the instance is opened. */}}
{{- define "floe-dagster.passwordEnv" -}}
- name: DAGSTER_PG_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.credentials.name }}
      key: {{ .Values.postgresql.credentials.key }}
{{- end -}}

{{- define "floe-dagster.instanceMounts" -}}
# DAGSTER_HOME is writable (Dagster keeps local files there); dagster.yaml comes from the ConfigMap.
- {name: dagster-home, mountPath: /opt/dagster/dagster_home}
- {name: instance, mountPath: /opt/dagster/dagster_home/dagster.yaml, subPath: dagster.yaml, readOnly: true}
- {name: workspace, mountPath: /opt/dagster/workspace, readOnly: true}
- {name: tmp, mountPath: /tmp}
{{- end -}}

{{- define "floe-dagster.instanceVolumes" -}}
- {name: dagster-home, emptyDir: {}}
- {name: tmp, emptyDir: {}}
- name: instance
  configMap:
    name: {{ include "floe-dagster.name" (list . "instance") }}
- name: workspace
  configMap:
    name: {{ include "floe-dagster.name" (list . "workspace") }}
{{- end -}}
