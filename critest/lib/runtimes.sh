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
    docker.io: ["$(mirror_endpoint)"]
  insecure: ["$registry_addr"]
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
    cat >>"$config" <<YAML
backends:
  delegate:
    handler: wsl2
    address: unix://$rt_dir/delegate/delegate.sock
YAML
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
# protocol on a unix socket. Its own state, run dir, cgroup parent and bridge
# network (bridge berthwsl0 on 10.84.0.0/16, apart from the node's berth0);
# it shares the node's file system, so it writes the CRI log files kubelet
# (critest) reads at their log_path.
delegate_dir() { echo "$rt_dir/delegate"; }
delegate_bridge=berthwsl0

delegate_start() {
  local bin=$1 dir
  dir=$(delegate_dir)
  mkdir -p "$dir"
  check_socket_path "$dir/delegate.sock"
  cat >"$dir/berth.yaml" <<YAML
socket: $dir/berth.sock
state_dir: $dir/state
run_dir: $dir/run
cgroup_parent: /berth-critest-wsl2
network:
  conf_dir: $dir/cni
  default_bridge: $delegate_bridge
  default_subnet: 10.84.0.0/16
log:
  level: ${BERTH_LOG_LEVEL:-info}
  format: text
registries:
  mirrors:
    registry.k8s.io: ["$(mirror_endpoint)"]
    gcr.io: ["$(mirror_endpoint)"]
    docker.io: ["$(mirror_endpoint)"]
  insecure: ["$registry_addr"]
delegate:
  socket: $dir/delegate.sock
YAML
  cp "$dir/berth.yaml" "$results/delegate.yaml"
  log "starting $bin delegate --config $dir/berth.yaml"
  start_daemon "$dir/berth.pid" "$dir/berth.yaml" "$results/delegate.log" \
    "$bin" delegate --config "$dir/berth.yaml"
  if ! wait_until 60 test -S "$dir/delegate.sock"; then
    tail -n 30 "$results/delegate.log" >&2 || true
    die "the delegate does not serve on $dir/delegate.sock (log: $results/delegate.log)"
  fi
  log "the delegate serves on $dir/delegate.sock (pid $(cat "$dir/berth.pid"))"
}

# delegate_stop: after the node berth removed every pod (its pods on the
# delegate too), stops the delegate, ends any supervisor of its pods that is
# left (they carry its run dir in their command line, so they are ours) and
# deletes its bridge.
delegate_stop() {
  local dir pid
  dir=$(delegate_dir)
  [ -d "$dir" ] || return 0
  if pid_is_ours "$dir/berth.pid" "$dir/berth.yaml"; then
    log "stopping the delegate pid $(cat "$dir/berth.pid")"
    stop_pid "$dir/berth.pid" "$dir/berth.yaml" 30
  fi
  for pid in $(pgrep -f -- "berth shim --pod-dir $dir/run/" || true); do
    log "ending leftover pod supervisor pid $pid of the delegate"
    kill -KILL "$pid" 2>/dev/null || true
  done
  if ip link show "$delegate_bridge" >/dev/null 2>&1; then
    ip link delete "$delegate_bridge" || log "cannot delete bridge $delegate_bridge"
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
  for host in registry.k8s.io gcr.io docker.io; do
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
