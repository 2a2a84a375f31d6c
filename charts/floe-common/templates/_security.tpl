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
