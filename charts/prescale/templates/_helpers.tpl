{{/* Names and labels shared by every template (Helm's conventions: 63 characters, the DNS label limit). */}}

{{/* The chart's name: prescale, or nameOverride. */}}
{{- define "prescale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects: fullnameOverride, else <release>-<name>, or <release> when it
already contains the name (a release called "prescale" makes objects called "prescale"). */}}
{{- define "prescale.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label: name-version, "+" not allowed in a label value. */}}
{{- define "prescale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods: never change them in an upgrade (a Deployment's selector is immutable). */}}
{{- define "prescale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prescale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "prescale.labels" -}}
helm.sh/chart: {{ include "prescale.chart" . }}
{{ include "prescale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: prescale
{{- end }}

{{/* The ServiceAccount's name. */}}
{{- define "prescale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prescale.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image, repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "prescale.image" -}}
{{- $repo := required "image.repository is required" .Values.image.repository }}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* The headless gRPC Service's name, and the scalerAddress a ScaledObject gives to reach the release: dns:///
makes KEDA's gRPC client (grpc-go) resolve every ready pod and balance round robin over them. */}}
{{- define "prescale.grpcServiceName" -}}
{{- printf "%s-grpc" (include "prescale.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "prescale.httpServiceName" -}}
{{- printf "%s-http" (include "prescale.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "prescale.grpcHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "prescale.grpcServiceName" .) .Release.Namespace }}
{{- end }}
{{- define "prescale.scalerAddress" -}}
{{- printf "dns:///%s:%v" (include "prescale.grpcHost" .) .Values.service.grpc.port }}
{{- end }}

{{/* The TLS Secret mounted for --tls-cert/--tls-key(/--tls-client-ca): cert-manager's or the user's. */}}
{{- define "prescale.tlsSecretName" -}}
{{- if .Values.tls.certManager.enabled }}
{{- printf "%s-grpc-tls" (include "prescale.fullname" .) }}
{{- else }}
{{- required "tls.existingSecret is required when tls.enabled is true and tls.certManager.enabled is false" .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{/* KEDA's client certificate Secret (cert-manager, mTLS): caCert, tlsClientCert, tlsClientKey come from it. */}}
{{- define "prescale.kedaClientSecretName" -}}
{{- printf "%s-keda-client-tls" (include "prescale.fullname" .) }}
{{- end }}

{{/* The Secret holding the --prometheus-config file. */}}
{{- define "prescale.prometheusConfigSecretName" -}}
{{- if .Values.prometheus.config.existingSecret }}
{{- .Values.prometheus.config.existingSecret }}
{{- else }}
{{- printf "%s-prometheus" (include "prescale.fullname" .) }}
{{- end }}
{{- end }}

{{/* A value as prescale reads it: whole numbers without an exponent (Helm reads values as float64, which
prints 1000000 as 1e+06); others as they are. */}}
{{- define "prescale.flagValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* A duration as prescale writes it ("5s", "1h30m", "250ms", "1.5s", "2d", or plain seconds "15") in
seconds, for the check of terminationGracePeriodSeconds against --shutdown-grace (src/duration.h). */}}
{{- define "prescale.durationSeconds" -}}
{{- $total := 0.0 }}
{{- $units := dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 "d" 86400.0 "" 1.0 }}
{{- range regexFindAll "[0-9.]+(ms|s|m|h|d)?" (toString .) -1 }}
{{- $num := regexFind "^[0-9.]+" . }}
{{- $unit := trimPrefix $num . }}
{{- $total = addf $total (mulf (float64 $num) (get $units $unit)) }}
{{- end }}
{{- $total }}
{{- end }}
