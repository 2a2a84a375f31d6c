{{/*
Where a component's pods may run: its nodeSelector, tolerations and affinity, as its values
give them (each left out when empty). Usage, at the pod spec's indentation:
  {{- include "floe-common.scheduling" .Values.webserver | nindent 6 }}
*/}}
{{- define "floe-common.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
