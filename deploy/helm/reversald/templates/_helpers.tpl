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

{{/* Every problem with the values at once, each named: a release with one of them fails before anything is applied. */}}
{{- define "reversald.validate" -}}
{{- $v := .Values }}
{{- $s := $v.secrets }}
{{- $errs := list }}
{{- if not $v.kafka.brokers }}
{{- $errs = append $errs "kafka.brokers is required (host:port,host:port)" }}
{{- end }}
{{- if not $s.database.name }}
{{- $errs = append $errs "secrets.database.name is required: the name of an existing Secret holding the PostgreSQL URL" }}
{{- end }}
{{- if not (or $s.qfpayClientKey.name $s.qfpayCredentials.name) }}
{{- $errs = append $errs "secrets.qfpayClientKey.name or secrets.qfpayCredentials.name is required: the Secret holding the QFPay client key (or a credentials file)" }}
{{- end }}
{{- if and (not $s.qfpayCredentials.name) (not (and $v.qfpay.baseURL $v.qfpay.appCode)) }}
{{- $errs = append $errs "qfpay.baseURL and qfpay.appCode are required without secrets.qfpayCredentials" }}
{{- end }}
{{- if and $v.kafka.saslMechanism (not $s.kafkaSASLPassword.name) }}
{{- $errs = append $errs "kafka.saslMechanism needs secrets.kafkaSASLPassword.name" }}
{{- end }}
{{- if and $s.kafkaTLS.name (not $v.kafka.tls) }}
{{- $errs = append $errs "secrets.kafkaTLS is given but kafka.tls is false" }}
{{- end }}
{{- if lt (int $v.shutdownTimeoutSeconds) 1 }}
{{- $errs = append $errs "shutdownTimeoutSeconds must be at least 1" }}
{{- end }}
{{- if and $v.keda.enabled (not $v.keda.prometheus.serverAddress) }}
{{- $errs = append $errs "keda.prometheus.serverAddress is required with keda.enabled" }}
{{- end }}
{{- $owned := splitList " " (include "reversald.ownedEnv" .) }}
{{- range $name, $_ := $v.env }}
{{- if has $name $owned }}
{{- $errs = append $errs (printf "env.%s is set by the chart (see values.yaml): use its own value instead" $name) }}
{{- end }}
{{- end }}
{{- if $errs }}
{{- fail (printf "the values have %d problem(s):\n- %s" (len $errs) (join "\n- " $errs)) }}
{{- end }}
{{- end -}}
