{{/* Replicas: replicaCount, else 2 with remediation (a standby for the Lease) and 1 without. */}}
{{- define "lifeboat.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount }}
{{- ternary 2 1 (.Values.remediation.enabled | default false) }}
{{- else }}
{{- .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* The pod's affinity: .Values.affinity, plus anti-affinity across nodes with more than one replica. */}}
{{- define "lifeboat.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) }}
{{- if and (gt (int (include "lifeboat.replicas" .)) 1) (not (hasKey $affinity "podAntiAffinity")) }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "lifeboat.selectorLabels" . | fromYaml)) }}
{{- if eq .Values.podAntiAffinity "required" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- else if eq .Values.podAntiAffinity "preferred" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- else if ne .Values.podAntiAffinity "none" }}
{{- fail (printf "podAntiAffinity is %q: use required, preferred or none" .Values.podAntiAffinity) }}
{{- end }}
{{- end }}
{{- with $affinity }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* Checks shared by the Ingress and the HTTPRoute: Discord's endpoint on a port of its own. */}}
{{- define "lifeboat.discordExposure" -}}
{{- $what := index . 1 }}
{{- with index . 0 }}
{{- if or (not .Values.secrets.discord.existingSecret) (ne .Values.secrets.discord.mode "bot") }}
{{- fail (printf "%s exposes Discord's interactions endpoint: it needs bot mode (secrets.discord.existingSecret, secrets.discord.mode=bot)" $what) }}
{{- end }}
{{- if not (include "lifeboat.discordPort" .) }}
{{- fail (printf "%s needs config.discord.listen (e.g. 0.0.0.0:9848): only that port, serving nothing but /discord/interactions, is exposed" $what) }}
{{- end }}
{{- end }}
{{- end }}
