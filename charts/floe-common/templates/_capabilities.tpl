{{/*
API versions chosen from the target cluster's version, so one chart installs on Kubernetes 1.20
(the local control plane: batch/v1beta1 CronJob, policy/v1beta1 PDB, autoscaling/v2beta2 HPA)
and on 1.25+ (batch/v1, policy/v1, autoscaling/v2). The version, not .Capabilities.APIVersions,
decides: an offline render knows no served APIs but does carry a Kubernetes version.
*/}}
{{- define "floe-common.cronJobApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}batch/v1{{- else -}}batch/v1beta1{{- end -}}
{{- end -}}

{{- define "floe-common.pdbApiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}policy/v1{{- else -}}policy/v1beta1{{- end -}}
{{- end -}}

{{- define "floe-common.hpaApiVersion" -}}
{{- if semverCompare ">=1.23-0" .Capabilities.KubeVersion.Version -}}autoscaling/v2{{- else -}}autoscaling/v2beta2{{- end -}}
{{- end -}}

{{/* A checksum annotation value for config a pod reads: pods roll when it changes. */}}
{{- define "floe-common.checksum" -}}
{{- toJson . | sha256sum -}}
{{- end -}}
