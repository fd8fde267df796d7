{{- define "musicbot-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "musicbot-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "musicbot-operator.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "musicbot-operator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "musicbot-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "musicbot-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "musicbot-operator.labels" -}}
{{ include "musicbot-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "musicbot-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "musicbot-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "musicbot-operator.leaseName" -}}
{{- default (printf "%s-leader" (include "musicbot-operator.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "musicbot-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "musicbot-operator.botImage" -}}
{{- printf "%s:%s" .Values.bot.image.repository (default .Chart.AppVersion .Values.bot.image.tag) }}
{{- end }}

{{/*
The rules the operator needs where MusicBots live, derived from operator/src/controller/
and operator/src/http.rs. Rendered into a ClusterRole (every namespace) or a Role (one).
*/}}
{{- define "musicbot-operator.rules" -}}
# Controller and /bots: list/watch MusicBots; patch adds and removes the finalizer.
- apiGroups: ["musicbot.dev"]
  resources: ["musicbots"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["musicbot.dev"]
  resources: ["musicbots/status"]
  verbs: ["patch"]
# The StatefulSet's owner reference blocks owner deletion; clusters that enforce owner
# reference permissions (OwnerReferencesPermissionEnforcement) require this.
- apiGroups: ["musicbot.dev"]
  resources: ["musicbots/finalizers"]
  verbs: ["update"]
# Server-side apply; the API server checks "create" when the apply creates the object.
# Watched as metadata only. Deleted (its pods orphaned, then adopted) only to change its
# claim templates, which are immutable; garbage collection removes it with its MusicBot.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["create", "patch", "delete", "list", "watch"]
# The token check reads the Secret a MusicBot names; the watch (metadata only) notices
# token rotation. Create: a fleet's key, the only Secret the operator makes (the admission
# policy refuses any other).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create"]
# Bot pods: their states (image pulls, crashes, scheduling) go into the MusicBot's status,
# and their /status is asked.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# kube-runtime's Recorder creates Events and patches repeats into a series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Where the MongoDB sync writes. It must be a namespace the operator watches, or the synced
MusicBots would never run.
*/}}
{{- define "musicbot-operator.syncNamespace" -}}
{{- $ns := default (default .Release.Namespace .Values.watchNamespace) .Values.mongodb.syncNamespace }}
{{- if and .Values.watchNamespace (ne $ns .Values.watchNamespace) }}
{{- fail (printf "mongodb.syncNamespace (%s) must be watchNamespace (%s): the operator runs only the MusicBots there" $ns .Values.watchNamespace) }}
{{- end }}
{{- $ns }}
{{- end }}
