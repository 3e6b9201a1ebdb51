{{/* The name of every object of a release. */}}
{{- define "berth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "berth.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "berth.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The host directories berth needs, from its config (berth's defaults when unset),
one mount per directory: a list of {name, path, propagate}. */}}
{{- define "berth.hostPaths" -}}
{{- $c := .Values.config -}}
{{- $net := $c.network | default dict -}}
{{- $all := list
  (list "state" ($c.state_dir | default "/var/lib/berth") true)
  (list "run" ($c.run_dir | default "/run/berth") true)
  (list "socket" (dir ($c.socket | default "/run/berth/berth.sock")) false)
  (list "cni-conf" ($net.conf_dir | default "/etc/cni/net.d") false)
  (list "pod-logs" .Values.podLogsDir false) -}}
{{- range $i, $d := ($net.plugin_dirs | default (list "/usr/lib/cni" "/opt/cni/bin")) -}}
{{- $all = append $all (list (printf "cni-bin-%d" $i) $d false) -}}
{{- end -}}
{{- $seen := dict -}}
mounts:
{{- range $all }}
{{- if not (hasKey $seen (index . 1)) }}
{{- $_ := set $seen (index . 1) true }}
- {name: {{ index . 0 }}, path: {{ index . 1 | quote }}, propagate: {{ index . 2 }}}
{{- end }}
{{- end }}
{{- end -}}
