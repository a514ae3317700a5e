{{/*
Helpers of rbac-admission.yaml.

"lifeboat.admission.same": CEL that holds when the field at the path (e.g.
"spec.patches", "spec.galera.recovery.job") is the same in object and
oldObject: both absent, or both present and equal (optional chaining, so a
missing parent is "absent", never an error).
*/}}
{{- define "lifeboat.admission.same" -}}
{{- $path := printf "?%s" (join ".?" (splitList "." .)) -}}
(object.{{ $path }} == oldObject.{{ $path }})
{{- end }}

{{/* All fields of the list unchanged: "<prefix>" and a list of names. */}}
{{- define "lifeboat.admission.allSame" -}}
{{- $prefix := index . 0 -}}
{{- $parts := list -}}
{{- range $f := index . 1 -}}
{{- $parts = append $parts (include "lifeboat.admission.same" (printf "%s.%s" $prefix $f)) -}}
{{- end -}}
{{- join " && " $parts -}}
{{- end }}

{{/*
What restore Jobs may use, as JSON: the ServiceAccounts, images, Secrets and
NFS exports the config names (garage.restore.image/backup, the s3Restore
templates' containers, Secret volumes and env) plus remediation.jobs.* for
anything else. Defaults mirror src/config.rs. kanidm-credential-reset runs no
Job (it execs into the running pod), so nothing of Kanidm's is allowed here.
*/}}
{{- define "lifeboat.admission.jobs" -}}
{{- $c := .Values.config -}}
{{- $jobs := .Values.remediation.jobs -}}
{{- $garage := default (dict) $c.garage -}}
{{- $restore := default (dict) $garage.restore -}}
{{- $images := list (default "alpine:3" $restore.image) -}}
{{- $secrets := list -}}
{{- $nfs := list -}}
{{- with $restore.backup }}{{ with .nfs }}{{ $nfs = append $nfs (dict "server" .server "path" .path) }}{{ end }}{{ end -}}
{{- $s3 := default (dict) (get $c "s3Restore") -}}
{{- $templates := list -}}
{{- with $s3.defaultTemplate }}{{ $templates = append $templates . }}{{ end -}}
{{- range $_, $app := default (dict) $s3.apps }}{{ with $app.template }}{{ $templates = append $templates . }}{{ end }}{{ end -}}
{{- range $t := $templates -}}
{{- $pod := default (dict) (default (dict) (default (dict) $t.spec).template).spec -}}
{{- range $ctr := concat (default (list) $pod.containers) (default (list) $pod.initContainers) -}}
{{- $images = append $images $ctr.image -}}
{{- range $e := default (list) $ctr.env }}{{ with $e.valueFrom }}{{ with .secretKeyRef }}{{ $secrets = append $secrets .name }}{{ end }}{{ end }}{{ end -}}
{{- range $e := default (list) $ctr.envFrom }}{{ with $e.secretRef }}{{ $secrets = append $secrets .name }}{{ end }}{{ end -}}
{{- end -}}
{{- range $v := default (list) $pod.volumes -}}
{{- with $v.secret }}{{ $secrets = append $secrets .secretName }}{{ end -}}
{{- with $v.nfs }}{{ $nfs = append $nfs (dict "server" .server "path" .path) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- $images = concat $images (default (list) $jobs.images) | uniq -}}
{{- $secrets = concat $secrets (default (list) $jobs.secrets) | uniq -}}
{{- $nfs = concat $nfs (default (list) $jobs.nfs) | uniq -}}
{{- toJson (dict "serviceAccounts" (default (list "default") $jobs.serviceAccounts) "images" $images "secrets" $secrets "nfs" $nfs) -}}
{{- end }}
