{{/* The release's base name. */}}
{{- define "ntt.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "ntt.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The image reference. */}}
{{- define "ntt.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The controller's image reference. */}}
{{- define "ntt.controllerImage" -}}
{{ .Values.controller.image.repository }}:{{ .Values.controller.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Role or ClusterRole: namespaced when the controller watches one namespace. */}}
{{- define "ntt.roleKind" -}}
{{ if .Values.controller.watchNamespace }}Role{{ else }}ClusterRole{{ end }}
{{- end -}}

{{/* The namespace of a namespaced Role (nothing for a ClusterRole). */}}
{{- define "ntt.roleNamespace" -}}
{{- with .Values.controller.watchNamespace }}
  namespace: {{ . }}
{{- end }}
{{- end -}}

{{/* The catalog URL from the Secret. */}}
{{- define "ntt.databaseEnv" -}}
- name: NTT_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required" .Values.database.existingSecret }}
      key: {{ .Values.database.key }}
{{- end -}}
