# shellcheck shell=bash disable=SC2154  # variables come from lib/common.sh and critest/run
# The runtimes critest/run can test: `berth` (the project), `containerd`
# (Debian's containerd 1.6 with its CRI plugin, the baseline) and `containerd2`
# (containerd 2.4.2's CRI plugin, built by hack/containerd). Each has
# <rt>_start (leaves $endpoint set) and <rt>_stop; both use $rt_dir (private
# to one runtime, removed after the run) and $results (kept: logs, report).
# Sourced by critest/run after lib/common.sh.

# mirror_endpoint: what every mirror points at.
mirror_endpoint() { echo "http://$registry_addr"; }

# wait_for_cri PIDFILE MARKER LOG: waits until the CRI socket at $endpoint
# answers both services (critest checks Version and ImageFsInfo first).
wait_for_cri() {
  local pidfile=$1 marker=$2 logfile=$3 deadline=$((SECONDS + 60))
  until [ -S "${endpoint#unix://}" ] && cri_answers version && cri_answers imagefsinfo; do
    if ! pid_is_ours "$pidfile" "$marker"; then
      tail -n 30 "$logfile" >&2 || true
      die "the runtime exited before serving CRI on $endpoint (log: $logfile)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$logfile" >&2 || true
      die "no CRI answer on $endpoint after 60s (log: $logfile)"
    fi
    sleep 0.5
  done
}

# crictl_rt ARGS...: crictl against the runtime under test (its own config
# file, so that crictl reads no /etc/crictl.yaml).
crictl_rt() {
  local config=$rt_dir/crictl.yaml
  [ -f "$config" ] || printf 'runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 30\n' \
    "$endpoint" "$endpoint" >"$config"
  "$tools_bin/crictl" --config "$config" "$@"
}

# cri_answers COMMAND: one quick crictl call, output discarded.
cri_answers() { crictl_rt --timeout 5s "$1" >/dev/null 2>&1; }

# remove_pods: removes every pod left on the runtime (critest cleans up after
# itself, but a failed or interrupted spec may not), so that stopping the
# runtime leaves no container process or mount behind.
remove_pods() {
  crictl_rt rmp --all --force >/dev/null 2>&1 || log "could not remove leftover pods (crictl rmp)"
}

# clean_dir DIR: unmounts whatever is still mounted below DIR (deepest first)
# and removes it, never crossing into another file system.
clean_dir() {
  local dir=$1 target
  [ -e "$dir" ] || return 0
  while read -r target; do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || log "cannot unmount $target"
  done < <(findmnt -rn -o TARGET | awk -v p="$dir/" 'index($0, p) == 1' | sort -r)
  rm -rf --one-file-system "$dir"
}

# check_socket_path PATH: unix socket paths are limited to 107 bytes.
check_socket_path() {
  [ "${#1}" -le 100 ] || die "socket path $1 is too long; set BERTH_CRITEST_STATE to a shorter directory"
}

# --- berth ------------------------------------------------------------------

berth_pidfile() { echo "$rt_dir/berth.pid"; }

berth_start() {
  local bin=${BERTH_BIN:-} config=$rt_dir/berth.yaml
  if [ -z "$bin" ]; then
    log "cargo build --release -p berth"
    (cd "$repo_dir" && cargo build --release -p berth)
    bin=${CARGO_TARGET_DIR:-$repo_dir/target}/release/berth
  fi
  [ -x "$bin" ] || die "berth binary $bin is missing"
  mkdir -p "$rt_dir"
  endpoint=unix://$rt_dir/berth.sock
  check_socket_path "$rt_dir/berth.sock"
  # critest's NRI specs connect to it as plugins (run_pass: -nri-socket).
  nri_socket=$rt_dir/nri.sock
  check_socket_path "$nri_socket"
  # A socket, state, run dir, cgroup parent and CNI conf dir of its own (berth
  # writes its default bridge network there), and every registry critest names
  # mirrored to the local registry.
  cat >"$config" <<YAML
socket: $rt_dir/berth.sock
state_dir: $rt_dir/state
run_dir: $rt_dir/run
cgroup_parent: /berth-critest
network:
  conf_dir: $rt_dir/cni
log:
  level: ${BERTH_LOG_LEVEL:-info}
  format: text
registries:
  mirrors:
    registry.k8s.io: ["$(mirror_endpoint)"]
    gcr.io: ["$(mirror_endpoint)"]
    k8s.gcr.io: ["$(mirror_endpoint)"]
    docker.io: ["$(mirror_endpoint)"]
  insecure: ["$registry_addr"]
# NRI on a socket of the run's own. critest's plugins hold a Synchronize open for
# 2 s on purpose (NRI's default request timeout): 10 s keeps them connected.
nri:
  enable: true
  socket_path: $nri_socket
  plugin_request_timeout_ms: 10000
YAML
  if [ "${handler:-}" = containerd ]; then
    # A containerd of the run's own serves the handler (its CRI plugins off).
    "$repo_dir/hack/containerd" start "$rt_dir/ctrd" >/dev/null
    cat >>"$config" <<YAML
backends:
  containerd:
    handler: containerd
    address: $rt_dir/ctrd/containerd.sock
YAML
  fi
  if [ "${handler:-}" = wsl2 ]; then
    # A delegate berth of the run's own serves the handler (delegate_start).
    delegate_start "$bin"
    delegate_backend_yaml >>"$config"
  fi
  cp "$config" "$results/berth.yaml"
  log "starting $bin serve --config $config"
  start_daemon "$(berth_pidfile)" "$config" "$results/berth.log" "$bin" serve --config "$config"
  wait_for_cri "$(berth_pidfile)" "$config" "$results/berth.log"
  log "berth serves CRI on $endpoint (pid $(cat "$(berth_pidfile)"))"
}

berth_stop() {
  local config=$rt_dir/berth.yaml
  endpoint=unix://$rt_dir/berth.sock
  if pid_is_ours "$(berth_pidfile)" "$config"; then
    remove_pods
    log "stopping berth pid $(cat "$(berth_pidfile)")"
    stop_pid "$(berth_pidfile)" "$config" 30
  fi
  # Pods that could not be removed (a load that failed half-way) keep their
  # supervisors once berth is gone, and the dir is wiped below: end them with
  # their children (pod init, containers). They carry our run dir in their
  # command line, so they are ours.
  local pid
  for pid in $(pgrep -f -- "berth shim --pod-dir $rt_dir/" || true); do
    log "ending leftover pod supervisor pid $pid"
    pkill -KILL -P "$pid" || true
    kill -KILL "$pid" 2>/dev/null || true
  done
  delegate_stop
  if [ -d "$rt_dir/ctrd" ]; then
    cp "$rt_dir/ctrd/containerd.log" "$results/containerd.log" 2>/dev/null || true
    "$repo_dir/hack/containerd" purge "$rt_dir/ctrd" || log "purging containerd in $rt_dir/ctrd failed"
  fi
  clean_dir "$rt_dir"
}

# --- the delegate (handler wsl2) ----------------------------------------------

# A second berth, `berth delegate`, as a Windows node's berth in its WSL2 VM:
# the node berth sends the pods of handler wsl2 to it over the delegate
# protocol. Its own state, run dir, cgroup parent and bridge network (bridge
# berthwsl0 on 10.84.0.0/16, apart from the node's berth0 on 10.85.0.0/16);
# it shares the node's file system (the same mount namespace, as WSL2 shares
# the Windows drives), so it writes the CRI log files kubelet (critest) reads
# at their log_path.
#
# BERTH_CRITEST_DELEGATE picks how the node reaches it:
#   netns (default, CI) in a network namespace of its own, like the VM: a veth
#         pair (host 10.83.0.1, delegate 10.83.0.2, a /30 apart from the CNI
#         ranges here and the serve tests' 10.100-149), TCP on 10.83.0.2:7443
#         with mutual TLS (a CA, server and client certificate made per run).
#   unix  in the host's network namespace, on a unix socket.
delegate_dir() { echo "$rt_dir/delegate"; }
delegate_bridge=berthwsl0
delegate_mode=${BERTH_CRITEST_DELEGATE:-netns}
delegate_netns=berth-critest-wsl2
delegate_veth=bcwsl0h # the host's end; the delegate's is bcwsl0d
delegate_host_ip=10.83.0.1
delegate_ip=10.83.0.2
delegate_port=7443
delegate_subnet=10.84.0.0/16
# The ports critest reaches at 127.0.0.1 on the node, served in the delegate's
# namespace: 12000 (port mapping: a hostPort) and 12003 (portforward in host
# network: nginx on the delegate's host network). The host forwards them there,
# as WSL2 forwards the Windows host's localhost ports into the VM.
delegate_host_ports=(12000 12003)

case "$delegate_mode" in netns | unix) ;; *) die "BERTH_CRITEST_DELEGATE=$delegate_mode: netns or unix" ;; esac

# runtime_apart: the specs of expected-pass.txt that the run's setup rules
# out, one a line: critest/run leaves them out of the expected list, saying so.
# With the delegate in a network namespace of its own, a pod's host network is
# the delegate's, not the node's, as for pods in a WSL2 VM: "HostNetwork is
# true" looks in the pod for a port critest listens on in the node's.
runtime_apart() {
  if [ "${handler:-}" = wsl2 ] && [ "$delegate_mode" = netns ]; then
    echo '[k8s.io] Security Context NamespaceOption runtime should support HostNetwork is true'
  fi
}

# delegate_mirror: the registry as the delegate reaches it. In its namespace
# 127.0.0.1 is its own, so the host forwards the veth's host address to the
# loopback registry (delegate_forward): reachable from this machine only.
delegate_mirror() {
  if [ "$delegate_mode" = netns ]; then echo "$delegate_host_ip:$registry_port"; else echo "$registry_addr"; fi
}

# delegate_backend_yaml: the node berth's backends.delegate.
delegate_backend_yaml() {
  local pki
  pki=$(delegate_dir)/pki
  if [ "$delegate_mode" = netns ]; then
    cat <<YAML
backends:
  delegate:
    handler: wsl2
    address: https://$delegate_ip:$delegate_port
    tls:
      ca: $pki/ca.crt
      cert: $pki/node.crt
      key: $pki/node.key
YAML
  else
    cat <<YAML
backends:
  delegate:
    handler: wsl2
    address: unix://$(delegate_dir)/delegate.sock
YAML
  fi
}

# delegate_certs DIR: a CA of the run's own, the delegate's server certificate
# (for its address) and the node's client certificate, keys 0600.
delegate_certs() {
  local pki=$1 name ca_key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  mkdir -p "$pki"
  chmod 700 "$pki"
  (
    cd "$pki"
    umask 077
    openssl req -x509 -days 2 -subj /CN=berth-critest-ca "${ca_key[@]}" -keyout ca.key -out ca.crt
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:%s\n' \
      "$delegate_ip" >delegate.ext
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' >node.ext
    for name in delegate node; do
      openssl req -subj "/CN=$name" "${ca_key[@]}" -keyout "$name.key" -out "$name.csr"
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$name.ext" -out "$name.crt"
    done
  ) >"$pki/openssl.log" 2>&1 || {
    cat "$pki/openssl.log" >&2
    die "openssl could not make the delegate's certificates in $pki"
  }
}

# delegate_netns_up: the namespace and its veth pair, a route from the host to
# the delegate's pod subnet (critest reaches pod IPs, as the Windows host
# reaches the VM's), forwarding on inside.
delegate_netns_up() {
  local peer=${delegate_veth%h}d
  command -v socat >/dev/null || die "socat is not installed (hack/install-deps --test)"
  ip netns add "$delegate_netns"
  ip link add "$delegate_veth" type veth peer name "$peer"
  ip link set "$peer" netns "$delegate_netns"
  ip addr add "$delegate_host_ip/30" dev "$delegate_veth"
  ip link set "$delegate_veth" up
  ip -n "$delegate_netns" addr add "$delegate_ip/30" dev "$peer"
  ip -n "$delegate_netns" link set "$peer" up
  ip -n "$delegate_netns" link set lo up
  ip route add "$delegate_subnet" via "$delegate_ip" dev "$delegate_veth"
  nsenter --net="/run/netns/$delegate_netns" sysctl -qw net.ipv4.ip_forward=1
}

# delegate_forward NAME LISTEN TARGET: a socat of the run's own forwarding
# LISTEN (ip:port) to TARGET (ip:port); its pid in <dir>/forward-NAME.pid.
delegate_forward() {
  local dir name=$1 listen=$2 target=$3
  dir=$(delegate_dir)
  start_daemon "$dir/forward-$name.pid" "TCP-LISTEN:${listen##*:},bind=${listen%:*}," \
    "$results/delegate-forward.log" \
    socat "TCP-LISTEN:${listen##*:},bind=${listen%:*},reuseaddr,fork" "TCP:$target"
  wait_until 10 tcp_answers "$listen" || die "socat does not listen on $listen (log: $results/delegate-forward.log)"
}

# tcp_answers IP:PORT: something accepts TCP connections there.
tcp_answers() { timeout 2 bash -c ": </dev/tcp/${1%:*}/${1##*:}" 2>/dev/null; }

delegate_start() {
  local bin=$1 dir serve port
  dir=$(delegate_dir)
  mkdir -p "$dir"
  if [ "$delegate_mode" = netns ]; then
    delegate_certs "$dir/pki"
    delegate_netns_up
    delegate_forward registry "$(delegate_mirror)" "$registry_addr"
    serve="  socket: null
  tcp: \"$delegate_ip:$delegate_port\"
  tls:
    cert: $dir/pki/delegate.crt
    key: $dir/pki/delegate.key
    client_ca: $dir/pki/ca.crt"
  else
    check_socket_path "$dir/delegate.sock"
    serve="  socket: $dir/delegate.sock"
  fi
  cat >"$dir/berth.yaml" <<YAML
socket: $dir/berth.sock
state_dir: $dir/state
run_dir: $dir/run
cgroup_parent: /berth-critest-wsl2
network:
  conf_dir: $dir/cni
  default_bridge: $delegate_bridge
  default_subnet: $delegate_subnet
log:
  level: ${BERTH_LOG_LEVEL:-info}
  format: text
registries:
  mirrors:
    registry.k8s.io: ["http://$(delegate_mirror)"]
    gcr.io: ["http://$(delegate_mirror)"]
    k8s.gcr.io: ["http://$(delegate_mirror)"]
    docker.io: ["http://$(delegate_mirror)"]
  insecure: ["$(delegate_mirror)"]
delegate:
$serve
YAML
  cp "$dir/berth.yaml" "$results/delegate.yaml"
  if [ "$delegate_mode" = netns ]; then
    # Only the network namespace (nsenter, not `ip netns exec`, which would
    # give it a mount namespace of its own): it shares the node's mounts.
    log "starting $bin delegate --config $dir/berth.yaml in network namespace $delegate_netns"
    start_daemon "$dir/berth.pid" "$dir/berth.yaml" "$results/delegate.log" \
      nsenter --net="/run/netns/$delegate_netns" "$bin" delegate --config "$dir/berth.yaml"
    if ! wait_until 60 tcp_answers "$delegate_ip:$delegate_port"; then
      tail -n 30 "$results/delegate.log" >&2 || true
      die "the delegate does not serve on $delegate_ip:$delegate_port (log: $results/delegate.log)"
    fi
    for port in "${delegate_host_ports[@]}"; do
      delegate_forward "host-$port" "127.0.0.1:$port" "$delegate_ip:$port"
    done
    log "the delegate serves on $delegate_ip:$delegate_port, TCP + mTLS (pid $(cat "$dir/berth.pid"))"
  else
    log "starting $bin delegate --config $dir/berth.yaml"
    start_daemon "$dir/berth.pid" "$dir/berth.yaml" "$results/delegate.log" \
      "$bin" delegate --config "$dir/berth.yaml"
    if ! wait_until 60 test -S "$dir/delegate.sock"; then
      tail -n 30 "$results/delegate.log" >&2 || true
      die "the delegate does not serve on $dir/delegate.sock (log: $results/delegate.log)"
    fi
    log "the delegate serves on $dir/delegate.sock (pid $(cat "$dir/berth.pid"))"
  fi
}

# delegate_stop: after the node berth removed every pod (its pods on the
# delegate too), stops the delegate, ends any supervisor of its pods that is
# left (they carry its run dir in their command line, so they are ours), the
# forwards, and deletes its bridge, or its namespace and veth pair (with the
# bridge and route in them) and certificates. Also cleans what a killed run
# left behind: run before every start.
delegate_stop() {
  local dir pid pidfile
  dir=$(delegate_dir)
  if [ -d "$dir" ]; then
    if pid_is_ours "$dir/berth.pid" "$dir/berth.yaml"; then
      log "stopping the delegate pid $(cat "$dir/berth.pid")"
      stop_pid "$dir/berth.pid" "$dir/berth.yaml" 30
    fi
    for pid in $(pgrep -f -- "berth shim --pod-dir $dir/run/" || true); do
      log "ending leftover pod supervisor pid $pid of the delegate"
      kill -KILL "$pid" 2>/dev/null || true
    done
    for pidfile in "$dir"/forward-*.pid; do
      [ -e "$pidfile" ] || continue
      pid=$(cat "$pidfile")
      # A forward's children serve its open connections.
      if pid_is_ours "$pidfile" "TCP-LISTEN:"; then pkill -KILL -P "$pid" 2>/dev/null || true; fi
      stop_pid "$pidfile" "TCP-LISTEN:" 5
    done
    rm -rf "$dir/pki"
  fi
  if ip link show "$delegate_bridge" >/dev/null 2>&1; then
    ip link delete "$delegate_bridge" || log "cannot delete bridge $delegate_bridge"
  fi
  if [ "${handler:-}" = wsl2 ] || [ -d "$dir" ]; then
    if [ -e "/run/netns/$delegate_netns" ]; then
      log "deleting network namespace $delegate_netns and veth $delegate_veth"
      ip netns delete "$delegate_netns" || log "cannot delete network namespace $delegate_netns"
    fi
    if ip link show "$delegate_veth" >/dev/null 2>&1; then
      ip link delete "$delegate_veth" || log "cannot delete veth $delegate_veth"
    fi
  fi
}

# --- containerd (Debian's 1.6) and containerd2 (2.4, built by hack/containerd) ---

containerd_pidfile() { echo "$rt_dir/containerd.pid"; }

# containerd_bridge: the CNI bridge of the containerd under test (its own per
# version, so that a leftover of one never confuses the other).
containerd_bridge() { if [ "${runtime:-}" = containerd2 ]; then echo critest2; else echo critest0; fi; }

# containerd_common: the parts both versions share, everything below
# $rt_dir: registry hosts (certs.d), CNI config and IPAM data, runc state.
containerd_common() {
  local host subnet=10.88.0.0/16
  [ "${runtime:-}" = containerd2 ] && subnet=10.89.0.0/16
  mkdir -p "$rt_dir"/{root,state,runc,net.d,ipam,certs.d}
  # Every image critest names comes from the loopback registry. `server`
  # (the fallback after the mirrors) is the mirror too, so a missing fixture
  # fails instead of going online. containerd 1.6 rejects a hosts.toml
  # without a host table.
  for host in registry.k8s.io gcr.io k8s.gcr.io docker.io; do
    mkdir -p "$rt_dir/certs.d/$host"
    cat >"$rt_dir/certs.d/$host/hosts.toml" <<TOML
server = "$(mirror_endpoint)"

[host."$(mirror_endpoint)"]
  capabilities = ["pull", "resolve"]
TOML
  done
  # Minimal pod network: a bridge of our own (never the host's cni0), no
  # masquerading (pods reach nothing outside the machine), portmap for
  # hostPort specs. containerd adds the loopback plugin itself.
  cat >"$rt_dir/net.d/10-critest.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "critest",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$(containerd_bridge)",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$rt_dir/ipam",
        "ranges": [[{ "subnet": "$subnet" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
}

# containerd_config: a containerd 1.6 config with everything (root, state,
# socket, runc state, CNI config and IPAM data, registry hosts) below $rt_dir.
containerd_config() {
  containerd_common
  cat >"$rt_dir/config.toml" <<TOML
version = 2
root = "$rt_dir/root"
state = "$rt_dir/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$rt_dir/containerd.sock"

[ttrpc]
  address = "$rt_dir/containerd.sock.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10.1"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine withholds CAP_SYS_RESOURCE, so no process may lower its
  # oom_score_adj (runc fails to give the sandbox -998); clamp to our own.
  restrict_oom_score_adj = true

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "${RUNC_BIN:-$(command -v runc)}"
        Root = "$rt_dir/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$rt_dir/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$rt_dir/certs.d"
TOML
}

# containerd2_config: the same for containerd 2.4 and its split CRI plugins
# (config version 3: 2.4 migrates it at start, with a warning in its log).
# No NRI (its socket is machine-wide), no debug socket, no metrics listener.
containerd2_config() {
  containerd_common
  cat >"$rt_dir/config.toml" <<TOML
version = 3
root = "$rt_dir/root"
state = "$rt_dir/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$rt_dir/containerd.sock"

[ttrpc]
  address = "$rt_dir/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"

  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "registry.k8s.io/pause:3.10.1"

  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$rt_dir/certs.d"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # As for 1.6: no lowering of oom_score_adj on this machine.
  restrict_oom_score_adj = true

  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"

    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "${RUNC_BIN:-/usr/sbin/runc}"
        Root = "$rt_dir/runc"
        SystemdCgroup = false

  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$rt_dir/net.d"
    max_conf_num = 1

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
}

# containerd_bin_dir: where the containerd under test and its shim are
# (PATH first: containerd finds its shim there).
containerd_bin_dir() {
  if [ "${runtime:-}" = containerd2 ]; then
    "$repo_dir/hack/containerd" build
  else
    dirname "$(command -v containerd)"
  fi
}

containerd_start() {
  local bin_dir
  if [ "${runtime:-}" != containerd2 ]; then
    command -v containerd >/dev/null || die "containerd is not installed (hack/install-deps --test)"
  fi
  command -v runc >/dev/null || [ -x /usr/sbin/runc ] || die "runc is not installed (hack/install-deps --test)"
  bin_dir=$(containerd_bin_dir)
  check_socket_path "$rt_dir/containerd.sock.ttrpc"
  endpoint=unix://$rt_dir/containerd.sock
  "${runtime:-containerd}_config"
  cp "$rt_dir/config.toml" "$results/containerd.toml"
  log "starting $bin_dir/containerd --config $rt_dir/config.toml"
  PATH=$bin_dir:$PATH start_daemon "$(containerd_pidfile)" "$rt_dir/config.toml" "$results/containerd.log" \
    "$bin_dir/containerd" --config "$rt_dir/config.toml"
  wait_for_cri "$(containerd_pidfile)" "$rt_dir/config.toml" "$results/containerd.log"
  log "$("$bin_dir/containerd" --version | awk '{ print $1, $3 }') serves CRI on $endpoint (pid $(cat "$(containerd_pidfile)"))"
}

containerd_stop() {
  local pid bridge
  bridge=$(containerd_bridge)
  endpoint=unix://$rt_dir/containerd.sock
  if pid_is_ours "$(containerd_pidfile)" "$rt_dir/config.toml"; then
    remove_pods
    log "stopping containerd pid $(cat "$(containerd_pidfile)")"
    stop_pid "$(containerd_pidfile)" "$rt_dir/config.toml" 30
  fi
  # Shims of our containerd outlive it; after remove_pods there should be
  # none, but end any that are left (they carry our socket in their command
  # line, so they are ours).
  for pid in $(pgrep -f -- "containerd-shim.*-address $rt_dir/containerd.sock( |$)" || true); do
    log "ending leftover shim pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
  done
  if ip link show "$bridge" >/dev/null 2>&1; then
    ip link delete "$bridge" || log "cannot delete bridge $bridge"
  fi
  clean_dir "$rt_dir"
}

# containerd2: containerd 2.4's own CRI plugin, as containerd above.
containerd2_start() { containerd_start; }
containerd2_stop() { containerd_stop; }
