{{/* The release's name for its objects: the release name, with the chart's appended unless it is there already. */}}
{{- define "reversald.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "reversald.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "reversald.labels" -}}
{{ include "reversald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "reversald.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Where each Secret is mounted. */}}
{{- define "reversald.secretDir" -}}
/var/run/secrets/reversald/{{ . }}
{{- end -}}

{{/* The pod's security settings, for the daemon and the migrate Job alike. */}}
{{- define "reversald.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "reversald.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The database Secret as a volume (the daemon and the migrate Job). */}}
{{- define "reversald.databaseVolume" -}}
- name: database
  secret:
    secretName: {{ required "secrets.database.name: the name of an existing Secret holding the PostgreSQL URL is required" .Values.secrets.database.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.secrets.database.key }}
        path: url
{{- end -}}

{{/* Variables the chart sets itself: values.env may not give them. */}}
{{- define "reversald.ownedEnv" -}}
DATABASE_URL DATABASE_URL_FILE QFPAY_CLIENT_KEY QFPAY_CLIENT_KEY_FILE KAFKA_SASL_PASSWORD KAFKA_SASL_PASSWORD_FILE QFPAY_CREDENTIALS_FILE KAFKA_TLS_CA_FILE KAFKA_TLS_CERT_FILE KAFKA_TLS_KEY_FILE KAFKA_BROKERS HTTP_ADDR SHUTDOWN_TIMEOUT INSTANCE_ID MIGRATE_ON_START KAFKA_GROUP_ID KAFKA_INPUT_TOPIC KAFKA_DLQ_TOPIC KAFKA_RESULTS_TOPIC KAFKA_TLS KAFKA_SASL_MECHANISM KAFKA_SASL_USERNAME QFPAY_BASE_URL QFPAY_APP_CODE QFPAY_MCHID GOMEMLIMIT
{{- end -}}
