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
{{- with (($c.backends | default dict).containerd) -}}
{{- $all = append $all (list "containerd" (dir (.address | default "/run/containerd/containerd.sock")) false) -}}
{{- end -}}
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


{{/* The port of config.telemetry.metrics.address (`ip:port`, `[ipv6]:port`), or
nothing when berth serves no metrics (or lets the kernel pick the port: 0). */}}
{{- define "berth.metricsPort" -}}
{{- $telemetry := .Values.config.telemetry | default dict -}}
{{- $address := (($telemetry.metrics | default dict).address | default "") | toString -}}
{{- $port := regexFind "[0-9]+$" $address -}}
{{- if and $port (ne (atoi $port) 0) -}}
{{- $port -}}
{{- end -}}
{{- end -}}

{{/* The RuntimeClasses of the release, from the handlers its config serves: youki's
(backends.youki.handler, "youki" when unset; none when set to ""), containerd's when
backends.containerd is set, then runtimeClasses.extra. A list of {name, handler,
nodeSelector, tolerations}. */}}
{{- define "berth.runtimeClasses" -}}
{{- $backends := .Values.config.backends | default dict -}}
{{- $rc := .Values.runtimeClasses -}}
{{- $out := list -}}
{{- $youki := "youki" -}}
{{- if and (hasKey $backends "youki") (hasKey ($backends.youki | default dict) "handler") -}}
{{- $youki = $backends.youki.handler -}}
{{- end -}}
{{- if $youki -}}
{{- $out = append $out (include "berth.handlerClass" (list $youki $rc.youki) | fromYaml) -}}
{{- end -}}
{{- with $backends.containerd -}}
{{- $out = append $out (include "berth.handlerClass" (list (.handler | default "containerd") $rc.containerd) | fromYaml) -}}
{{- end -}}
{{- $out = concat $out ($rc.extra | default list) -}}
classes:
{{- toYaml $out | nindent 2 }}
{{- end -}}

{{/* The RuntimeClass of a handler berth serves: (list HANDLER VALUES); its node
selector is the handler's node label unless VALUES.nodeSelector names one. */}}
{{- define "berth.handlerClass" -}}
{{- $handler := index . 0 -}}
{{- $v := index . 1 -}}
{{- $selector := $v.nodeSelector | default (dict (printf "berth.dev/handler-%s" $handler) "true") -}}
{{- toYaml (dict "name" $v.name "handler" $handler "nodeSelector" $selector "tolerations" ($v.tolerations | default list)) -}}
{{- end -}}
