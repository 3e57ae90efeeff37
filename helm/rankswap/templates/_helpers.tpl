{{/*
Names. "rankswap.fullname" is the release's prefix for every object: the release name when it
already contains the chart name (release "rankswap" -> "rankswap-ranker"), else
"<release>-rankswap".
*/}}
{{- define "rankswap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "rankswap.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "rankswap.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries (never in selectors: they change with each chart version). */}}
{{- define "rankswap.commonLabels" -}}
helm.sh/chart: {{ include "rankswap.chart" . }}
app.kubernetes.io/part-of: rankswap
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Selector labels of one component; call with (dict "ctx" $ "component" "ranker"). The name is
"rankswap-ranker" / "rankswap-operator", as in manifests/ and the ArtifactVersion selectors.
*/}}
{{- define "rankswap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rankswap.name" .ctx }}-{{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end -}}

{{- define "rankswap.labels" -}}
{{ include "rankswap.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
{{ include "rankswap.commonLabels" .ctx }}
{{- end -}}

{{- define "rankswap.operator.fullname" -}}{{ include "rankswap.fullname" . }}-operator{{- end -}}
{{- define "rankswap.ranker.fullname" -}}{{ include "rankswap.fullname" . }}-ranker{{- end -}}

{{- define "rankswap.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "rankswap.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rankswap.ranker.serviceAccountName" -}}
{{- if .Values.ranker.serviceAccount.create -}}
{{- default (include "rankswap.ranker.fullname" .) .Values.ranker.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.ranker.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the ranker admin token (read by the rankers and by the operator). */}}
{{- define "rankswap.adminTokenSecret" -}}
{{- default (printf "%s-admin" (include "rankswap.ranker.fullname" .)) .Values.ranker.adminToken.secretName -}}
{{- end -}}

{{- define "rankswap.storeConfigName" -}}{{ include "rankswap.fullname" . }}-store{{- end -}}

{{/* image reference: repository:tag, or repository@digest when a digest is given. */}}
{{- define "rankswap.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The artifact root the pipelines publish to: s3://<bucket>/<prefix>. */}}
{{- define "rankswap.storeRoot" -}}
{{- $bucket := required "store.bucket is required" .Values.store.bucket -}}
{{- trimSuffix "/" (printf "s3://%s/%s" $bucket (trimAll "/" .Values.store.prefix)) -}}
{{- end -}}

{{/* Artifact roots the rankers accept: ranker.allowedRoots, else s3://<bucket>/<prefix>. */}}
{{- define "rankswap.allowedRoots" -}}
{{- if .Values.ranker.allowedRoots -}}
{{- join "," .Values.ranker.allowedRoots -}}
{{- else -}}
{{- $bucket := required "store.bucket (or ranker.allowedRoots) is required" .Values.store.bucket -}}
{{- trimSuffix "/" (printf "s3://%s/%s" $bucket (trimAll "/" .Values.store.prefix)) -}}
{{- end -}}
{{- end -}}

{{/* envFrom entries for the artifact store (both components). */}}
{{- define "rankswap.storeEnvFrom" -}}
- configMapRef:
    name: {{ include "rankswap.storeConfigName" . }}
{{- with .Values.store.credentialsSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end -}}

{{- define "rankswap.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "rankswap.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* The ArtifactVersion's name (the chart's own, or artifactVersion.name), and the start-up
ConfigMap the operator keeps for it (rankswap_operator.startup.configmap_name). */}}
{{- define "rankswap.artifactVersionName" -}}
{{- default (include "rankswap.fullname" .) .Values.artifactVersion.name -}}
{{- end -}}
{{- define "rankswap.startupConfigMap" -}}{{ include "rankswap.artifactVersionName" . }}-startup{{- end -}}
