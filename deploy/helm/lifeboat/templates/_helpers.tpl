{{/* Chart name. */}}
{{- define "lifeboat.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name: the release name, or <release>-<chart> when it does not contain the chart name. */}}
{{- define "lifeboat.fullname" -}}
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

{{- define "lifeboat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lifeboat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lifeboat.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "lifeboat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lifeboat
{{- end }}

{{- define "lifeboat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lifeboat.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Mount points. */}}
{{- define "lifeboat.garageAdminTokenDir" -}}/etc/lifeboat/secrets/garage-admin{{- end }}
{{- define "lifeboat.discordDir" -}}/etc/lifeboat/secrets/discord{{- end }}
{{- define "lifeboat.garageBackupDir" -}}/var/lib/lifeboat/garage-meta-backup{{- end }}
{{- define "lifeboat.apiTokenDir" -}}/etc/lifeboat/secrets/api{{- end }}
{{- define "lifeboat.webhookCredentialsDir" -}}/etc/lifeboat/secrets/alertmanager{{- end }}

{{/* The config file: .Values.config plus the paths of what the chart mounts. */}}
{{- define "lifeboat.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $garage := default (dict) (get $config "garage") }}
{{- range $k := list "adminTokenFile" "backupDir" }}
{{- if hasKey $garage $k }}
{{- fail (printf "config.garage.%s is set by the chart; use %s instead" $k (ternary "secrets.garageAdminToken.existingSecret" "garageMetaBackupVolume" (eq $k "adminTokenFile"))) }}
{{- end }}
{{- end }}
{{- with .Values.secrets.garageAdminToken.existingSecret }}
{{- if not $garage.adminUrl }}
{{- fail "secrets.garageAdminToken.existingSecret needs config.garage.adminUrl: the token is only used for the admin API" }}
{{- end }}
{{- $_ := set $garage "adminTokenFile" (printf "%s/%s" (include "lifeboat.garageAdminTokenDir" $) $.Values.secrets.garageAdminToken.key) }}
{{- end }}
{{- if .Values.garageMetaBackupVolume }}
{{- $_ := set $garage "backupDir" (include "lifeboat.garageBackupDir" .) }}
{{- end }}
{{- /* null values (e.g. adminUrl: null) are left out: every key has a default. */}}
{{- range $k, $v := $garage }}
{{- if kindIs "invalid" $v }}
{{- $_ := unset $garage $k }}
{{- end }}
{{- end }}
{{- $_ := set $config "garage" $garage }}
{{- $discord := default (dict) (get $config "discord") }}
{{- range $k := list "botTokenFile" "publicKeyFile" "webhookUrlFile" }}
{{- if hasKey $discord $k }}
{{- fail (printf "config.discord.%s is set by the chart; use secrets.discord.existingSecret instead" $k) }}
{{- end }}
{{- end }}
{{- with .Values.secrets.discord.existingSecret }}
{{- $s := $.Values.secrets.discord }}
{{- if not $.Values.remediation.enabled }}
{{- fail "secrets.discord.existingSecret needs remediation.enabled: Discord follows the RemediationRun journal" }}
{{- end }}
{{- $dir := include "lifeboat.discordDir" $ }}
{{- if eq $s.mode "bot" }}
{{- $_ := set $discord "botTokenFile" (printf "%s/%s" $dir $s.botTokenKey) }}
{{- /* Only the HTTP transport verifies signed requests; the Gateway (the default) needs no public key. */}}
{{- if and (eq (toString (default "gateway" $discord.transport)) "http") (not (get $discord "publicKey")) }}
{{- $_ := set $discord "publicKeyFile" (printf "%s/%s" $dir $s.publicKeyKey) }}
{{- end }}
{{- else if eq $s.mode "webhook" }}
{{- $_ := set $discord "webhookUrlFile" (printf "%s/%s" $dir $s.webhookUrlKey) }}
{{- else }}
{{- fail (printf "secrets.discord.mode is %q: use bot (buttons) or webhook (notifications only)" $s.mode) }}
{{- end }}
{{- end }}
{{- if and $discord.listen (not (and .Values.secrets.discord.existingSecret (eq .Values.secrets.discord.mode "bot"))) }}
{{- fail "config.discord.listen: only bot mode receives interactions (secrets.discord.existingSecret with secrets.discord.mode=bot)" }}
{{- end }}
{{- if and $discord.listen (ne (toString (default "gateway" $discord.transport)) "http") }}
{{- fail "config.discord.listen serves Discord's HTTP interactions endpoint: set config.discord.transport: http (the default Gateway transport needs no endpoint)" }}
{{- end }}
{{- if $discord }}
{{- $_ := set $config "discord" $discord }}
{{- end }}
{{- $remediation := default (dict) (get $config "remediation") }}
{{- range $k, $v := dict "apiTokenFile" "secrets.apiToken.existingSecret" "webhookCredentialsFile" "secrets.webhookCredentials.existingSecret" }}
{{- if hasKey $remediation $k }}
{{- fail (printf "config.remediation.%s is set by the chart; use %s instead" $k $v) }}
{{- end }}
{{- end }}
{{- /* One switch: remediation.enabled grants the write RBAC and turns execution on. */}}
{{- if and (hasKey $remediation "execute") (ne (toString $remediation.execute) (toString .Values.remediation.enabled)) }}
{{- fail (printf "config.remediation.execute is %v but remediation.enabled is %v: remediation.enabled alone turns execution on (it sets config.remediation.execute); remove config.remediation.execute" $remediation.execute .Values.remediation.enabled) }}
{{- end }}
{{- if .Values.remediation.enabled }}
{{- $_ := set $remediation "execute" true }}
{{- end }}
{{- with .Values.secrets.apiToken.existingSecret }}
{{- $_ := set $remediation "apiTokenFile" (printf "%s/%s" (include "lifeboat.apiTokenDir" $) $.Values.secrets.apiToken.key) }}
{{- end }}
{{- with .Values.secrets.webhookCredentials.existingSecret }}
{{- $_ := set $remediation "webhookCredentialsFile" (printf "%s/%s" (include "lifeboat.webhookCredentialsDir" $) $.Values.secrets.webhookCredentials.key) }}
{{- end }}
{{- if $remediation }}
{{- $_ := set $config "remediation" $remediation }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Container port: the port of config.listen. */}}
{{- define "lifeboat.containerPort" -}}
{{- $port := regexFind "[0-9]+$" (toString .Values.config.listen) }}
{{- required "config.listen must end in a port, e.g. 0.0.0.0:9847" $port }}
{{- end }}

{{/* Discord's own port: the port of config.discord.listen, or empty. */}}
{{- define "lifeboat.discordPort" -}}
{{- with (.Values.config.discord | default dict).listen }}
{{- required "config.discord.listen must end in a port, e.g. 0.0.0.0:9848" (regexFind "[0-9]+$" (toString .)) }}
{{- end }}
{{- end }}
