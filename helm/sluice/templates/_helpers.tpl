{{/* Labels every object of the chart carries. */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/name: sluice-operator
app.kubernetes.io/part-of: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The operator's image reference. */}}
{{- define "sluice.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The sluice-runtime image the operator puts in predictor pods and fetch init containers. */}}
{{- define "sluice.runtimeImage" -}}
{{ .Values.images.runtime.repository }}:{{ .Values.images.runtime.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The router image the operator puts in router pods. */}}
{{- define "sluice.routerImage" -}}
{{ .Values.images.router.repository }}:{{ .Values.images.router.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Triton image the operator puts in predictor pods of engine "triton". */}}
{{- define "sluice.tritonImage" -}}
{{ .Values.images.triton.repository }}:{{ .Values.images.triton.tag }}
{{- end -}}

{{/* Name of the operator's objects: "sluice-operator" for a release named "sluice". */}}
{{- define "sluice.fullname" -}}
{{ printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end -}}
