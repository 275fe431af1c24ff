{{/* rayscale.name: the chart name, or nameOverride, truncated to 63 characters. */}}
{{- define "rayscale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* rayscale.fullname: release-qualified name (the RayCluster's name), truncated to 63 characters. */}}
{{- define "rayscale.fullname" -}}
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

{{/* rayscale.chart: chart name and version, as the helm.sh/chart label wants them. */}}
{{- define "rayscale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* rayscale.labels: the common labels of every object. */}}
{{- define "rayscale.labels" -}}
helm.sh/chart: {{ include "rayscale.chart" . }}
{{ include "rayscale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rayscale
{{- end }}

{{/* rayscale.selectorLabels: the labels selectors match on (stable across upgrades). */}}
{{- define "rayscale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rayscale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* rayscale.serviceAccountName: the ServiceAccount Ray pods run as. */}}
{{- define "rayscale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rayscale.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* rayscale.image: repository:tag of the rayscale image (tag defaults to appVersion). */}}
{{- define "rayscale.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* rayscale.authSecretName: the Secret holding the Ray auth token. */}}
{{/* rayscale.authSecretOption: whether the operator takes authOptions.secretName (KubeRay >= 1.6.0,
kuberay #4554). Older operators make their own token Secret and would drop (or, under strict field
validation, reject) the field. */}}
{{- define "rayscale.authSecretOption" -}}
{{- if semverCompare ">=1.6.0-0" .Values.kuberay.version }}true{{ end }}
{{- end }}

{{/* rayscale.upgradeStrategyOption: whether the operator knows RayCluster upgradeStrategy (KubeRay >=
1.6.0). 1.5.x's CRD has no such field, and its operator recreates a pod only when it is unhealthy. */}}
{{- define "rayscale.upgradeStrategyOption" -}}
{{- if semverCompare ">=1.6.0-0" .Values.kuberay.version }}true{{ end }}
{{- end }}

{{- define "rayscale.authSecretName" -}}
{{- default (include "rayscale.suffixed" (dict "root" . "suffix" "ray-auth")) .Values.auth.secretName }}
{{- end }}

{{/* rayscale.pushgatewayName: name of the Pushgateway's Deployment and Service. */}}
{{- define "rayscale.pushgatewayName" -}}
{{- include "rayscale.suffixed" (dict "root" . "suffix" "pushgateway") }}
{{- end }}

{{/* rayscale.authModeEnv: RAY_AUTH_MODE, explicit in every Ray container, because Ray's default is
not the chart's: Ray 2.60's `ray start` turns token mode on when a token is present and the mode unset,
and from Ray 2.61 token is the default for every cluster. With auth.mode=disabled the operator sends no
token, so an image bump would otherwise lock it out (401). */}}
{{- define "rayscale.authModeEnv" -}}
- name: RAY_AUTH_MODE
  value: {{ .Values.auth.mode | quote }}
{{- end }}

{{/* rayscale.rayStartParams: the `ray start` parameters of the head or of the workers (dict: root,
head), as YAML: the chart's defaults, each replaced by the same key in head.rayStartParams or
worker.rayStartParams. One map, so a key never renders twice; every value a string, as KubeRay's
map[string]string field wants (whole numbers without an exponent). */}}
{{- define "rayscale.rayStartParams" -}}
{{- $params := dict "metrics-export-port" "8080" }}
{{- $group := .root.Values.worker }}
{{- if .head }}
{{- $_ := set $params "dashboard-host" "0.0.0.0" }}
{{- $group = .root.Values.head }}
{{- end }}
{{- $user := $group.rayStartParams }}
{{- /* Ray's logical CPUs, stated where the pod's limit is a fraction of a core (values numCpus). */}}
{{- with $group.numCpus }}
{{- $_ := set $params "num-cpus" (toString (int64 .)) }}
{{- end }}
{{- $strings := dict }}
{{- range $key, $value := $user }}
{{- /* Helm reads numbers in values files as floats: 1000000000 would print as 1e+09. */}}
{{- if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}
{{- $value = int64 $value }}
{{- end }}
{{- $_ := set $strings $key (toString $value) }}
{{- end }}
{{- toYaml (mergeOverwrite $params $strings) }}
{{- end }}

{{/* rayscale.metricsPort: the port Ray exports metrics on, head or workers (dict: root, head): the
metrics-export-port of rayscale.rayStartParams, so the container port "metrics" (which the PodMonitors
scrape by name) and the NetworkPolicy follow a user's override. */}}
{{- define "rayscale.metricsPort" -}}
{{- $port := get (include "rayscale.rayStartParams" . | fromYaml) "metrics-export-port" }}
{{- if not (regexMatch "^[0-9]{1,5}$" $port) }}
{{- fail (printf "%s.rayStartParams.metrics-export-port must be a port number, not %q" (ternary "head" "worker" .head) $port) }}
{{- end }}
{{- $port }}
{{- end }}

{{/* rayscale.rayContainer: the Ray container shared by head and workers (dict: root, name, cpu, memory, ports). */}}
{{- define "rayscale.rayContainer" -}}
- name: {{ .name }}
  image: {{ include "rayscale.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  resources:
    requests:
      cpu: {{ .cpu | quote }}
      memory: {{ .memory | quote }}
    limits:
      cpu: {{ .cpu | quote }}
      memory: {{ .memory | quote }}
  securityContext:
    {{- toYaml .root.Values.securityContext | nindent 4 }}
  env:
    {{- include "rayscale.authModeEnv" .root | nindent 4 }}
    # Seconds Ray waits after SIGTERM before it SIGKILLs a stopped job's driver (values jobStopWaitSeconds).
    - name: RAY_JOB_STOP_WAIT_TIME_S
      value: {{ .root.Values.jobStopWaitSeconds | quote }}
  {{- with .ports }}
  ports:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: ray-logs
      mountPath: /tmp/ray
    - name: results
      mountPath: {{ .root.Values.results.mountPath }}
{{- end }}

{{/* rayscale.podSpec: the pod spec shared by head and workers, as the pushgateway chart shares
its podSpec (dict: root, name, cpu, memory, ports, head). Only the head mounts the ServiceAccount
token (the driver resizes the cluster with rbac.scaleRole) and the results volume claim. */}}
{{- define "rayscale.podSpec" -}}
serviceAccountName: {{ include "rayscale.serviceAccountName" .root }}
{{- if .head }}
# The head needs its ServiceAccount token when the driver resizes the cluster (rbac.scaleRole) or
# KubeRay's autoscaler sidecar, which runs in the head pod, talks to the API server.
automountServiceAccountToken: {{ or .root.Values.rbac.scaleRole .root.Values.autoscaling.enabled }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  {{- include "rayscale.rayContainer" . | nindent 2 }}
volumes:
  - name: ray-logs
    emptyDir: {}
  - name: results
    {{- if and .head .root.Values.results.persistence.enabled }}
    persistentVolumeClaim:
      claimName: {{ include "rayscale.suffixed" (dict "root" .root "suffix" "results") }}
    {{- else }}
    emptyDir: {}
    {{- end }}
{{- with .root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* rayscale.suffixed: fullname plus "-suffix", the fullname shortened so the whole stays within 63 (dict: root, suffix). */}}
{{- define "rayscale.suffixed" -}}
{{- $base := include "rayscale.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base .suffix }}
{{- end }}
