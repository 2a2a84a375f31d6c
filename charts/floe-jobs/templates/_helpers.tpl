{{/* The jobs' ServiceAccount name. */}}
{{- define "floe-jobs.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "floe-common.name" (list . "dbt")) -}}
{{- end -}}

{{/* The ConfigMap of the release's CompiledArtifacts: one per data product's release. */}}
{{- define "floe-jobs.artifactsConfigMap" -}}
{{- .Values.artifacts.configMapName | default (include "floe-common.name" (list . "artifacts")) -}}
{{- end -}}

{{/* The ConfigMap of floe_dbt.py, which a model's pod runs dbt through. */}}
{{- define "floe-jobs.runnerConfigMap" -}}
{{- include "floe-common.name" (list . "dbt-runner") -}}
{{- end -}}

{{/* Where profiles.yml comes from: the operator's Secret, or the chart's own ConfigMap. */}}
{{- define "floe-jobs.profilesVolume" -}}
{{- if eq .Values.dbt.profiles.source "secret" }}
secret:
  secretName: {{ .Values.dbt.profiles.existingSecret }}
  items: [{key: {{ .Values.dbt.profiles.key | quote }}, path: profiles.yml}]
{{- else }}
configMap:
  name: {{ include "floe-common.name" (list . "dbt-profiles") }}
{{- end }}
{{- end -}}

{{/*
The pod of one model's run: the single description of how a model's pod looks, used by the Job
the runner renders and by the CronJob of a scheduled model.
Usage: include "floe-jobs.podTemplate" (list . $model)
*/}}
{{- define "floe-jobs.podTemplate" -}}
{{- $root := index . 0 -}}
{{- $model := index . 1 -}}
metadata:
  labels:
    {{- include "floe-common.labels" (list $root "dbt-model") | nindent 4 }}
    floe.dev/model: {{ $model.name | replace "_" "-" | lower | trunc 63 | trimSuffix "-" | quote }}
    floe.dev/product: {{ $root.Values.floe.productName | default "unknown" | trunc 63 | trimSuffix "-" | quote }}
    {{- with $root.Values.run.runId }}
    floe.dev/run-id: {{ . | quote }}
    {{- end }}
  annotations:
    floe.dev/dbt-model: {{ $model.name | quote }}
    checksum/profiles: {{ include "floe-common.checksum" $root.Values.dbt.profiles }}
    checksum/runner: {{ $root.Files.Get "files/floe_dbt.py" | sha256sum }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "floe-jobs.serviceAccountName" $root }}
  automountServiceAccountToken: false
  securityContext:
    {{- include "floe-common.podSecurityContext" $root | nindent 4 }}
  {{- include "floe-common.scheduling" $root.Values | nindent 2 }}
  containers:
    - name: dbt
      image: {{ include "floe-common.image" $root.Values.image }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- /*
      The model is selected by its file (a model's name is its file's): a bare name also
      matches the dbt project's own name, and would select every node of a project that has a
      model named as it (customer_360 in customer_360). With it, the seeds it reads directly
      (each Job loads its own), and the tests whose every parent is built by now (buildable).
      */}}
      {{- $file := printf "file:%s" $model.name }}
      command: ["python3", "/opt/floe-dbt/floe_dbt.py", {{ $root.Values.job.command | quote }}, "--select", {{ $file | quote }}, {{ printf "1+%s,resource_type:seed" $file | quote }}, "--indirect-selection", "buildable", "--target", {{ $root.Values.dbt.target | quote }}]
      env:
        - {name: DBT_PROFILES_DIR, value: /etc/dbt}
        - {name: FLOE_DBT_MODEL, value: {{ $model.name | quote }}}
        {{- range $name, $secret := $root.Values.dbt.secretEnv }}
        - name: {{ $name }}
          valueFrom:
            secretKeyRef: {name: {{ $secret.name | quote }}, key: {{ $secret.key | quote }}}
        {{- end }}
        - {name: DBT_TARGET_PATH, value: /work/target}
        - {name: DBT_LOG_PATH, value: /work/logs}
        - {name: FLOE_ENVIRONMENT, value: {{ $root.Values.floe.environment | quote }}}
        - {name: FLOE_ARTIFACTS_PATH, value: /etc/floe/compiled-artifacts}
        {{- include "floe-common.otelEnv" (list $root (printf "dbt-%s" $model.name)) | nindent 8 }}
      resources:
        {{- toYaml ($model.resources | default $root.Values.resources) | nindent 8 }}
      securityContext:
        {{- include "floe-common.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        - {name: profiles, mountPath: /etc/dbt, readOnly: true}
        - {name: artifacts, mountPath: /etc/floe/compiled-artifacts, readOnly: true}
        - {name: runner, mountPath: /opt/floe-dbt, readOnly: true}
        - {name: work, mountPath: /work}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - name: profiles
      {{- include "floe-jobs.profilesVolume" $root | nindent 6 }}
    - name: artifacts
      configMap:
        name: {{ include "floe-jobs.artifactsConfigMap" $root }}
    - name: runner
      configMap:
        name: {{ include "floe-jobs.runnerConfigMap" $root }}
    # dbt writes target/ and logs/; the root filesystem is read-only.
    - {name: work, emptyDir: {}}
    - {name: tmp, emptyDir: {}}
{{- end -}}

{{/* Job spec settings shared by the runner's Job and a CronJob's jobTemplate. */}}
{{- define "floe-jobs.jobSettings" -}}
backoffLimit: {{ .Values.job.backoffLimit }}
activeDeadlineSeconds: {{ .Values.job.activeDeadlineSeconds }}
ttlSecondsAfterFinished: {{ .Values.job.ttlSecondsAfterFinished }}
{{- end -}}
