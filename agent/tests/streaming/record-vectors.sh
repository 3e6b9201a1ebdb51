#!/usr/bin/env bash
# Records the SPDY test vectors in agent/src/streaming/spdy/vectors/ from real
# exchanges between crictl and the CRI streaming server of Debian's containerd
# (1.6, which serves kubelet's streaming library): starts the loopback registry
# and a containerd of its own as critest/run does (state below
# $BERTH_CRITEST_STATE), runs a pod with a shell container and a web server, then
# the ignored test `record_containerd_vectors`, which relays crictl's streaming
# connections and writes both directions of each as hex. Needs root.
#   agent/tests/streaming/record-vectors.sh [OUT_DIR]
set -euo pipefail
log_tag=record-vectors
repo=$(cd "$(dirname "$0")/../../.." && pwd)
# shellcheck source=critest/lib/common.sh
. "$repo/critest/lib/common.sh"
# shellcheck source=critest/lib/runtimes.sh
. "$repo/critest/lib/runtimes.sh"

out=${1:-$repo/agent/src/streaming/spdy/vectors}
rt_dir=$state_root/containerd-vectors
results=$state_root/results/containerd-vectors
registry_started=0

cleanup() {
  containerd_stop || log "stopping containerd failed"
  if [ "$registry_started" = 1 ]; then
    "$repo/critest/registry" stop || log "stopping the registry failed"
  fi
}
trap cleanup EXIT

"$repo/critest/tools"
if ! "$repo/critest/registry" status; then
  "$repo/critest/registry" start
  registry_started=1
fi
"$repo/critest/fixtures"
containerd_stop
mkdir -p "$results"
containerd_start

busybox=registry.k8s.io/e2e-test-images/busybox:1.29-2
nginx=registry.k8s.io/e2e-test-images/nginx:1.14-2
crictl_rt pull "$busybox" >/dev/null
crictl_rt pull "$nginx" >/dev/null
cat >"$rt_dir/pod.json" <<JSON
{"metadata": {"name": "vectors", "namespace": "default", "uid": "vectors-uid"},
 "linux": {}}
JSON
cat >"$rt_dir/shell.json" <<JSON
{"metadata": {"name": "shell"}, "image": {"image": "$busybox"},
 "command": ["sh"], "stdin": true, "linux": {}}
JSON
cat >"$rt_dir/web.json" <<JSON
{"metadata": {"name": "web"}, "image": {"image": "$nginx"}, "linux": {}}
JSON
pod=$(crictl_rt runp "$rt_dir/pod.json")
shell=$(crictl_rt create "$pod" "$rt_dir/shell.json" "$rt_dir/pod.json")
web=$(crictl_rt create "$pod" "$rt_dir/web.json" "$rt_dir/pod.json")
crictl_rt start "$shell" "$web" >/dev/null
log "pod $pod: shell $shell, web $web"

(cd "$repo" && BERTH_RECORD_ENDPOINT="${endpoint#unix://}" BERTH_RECORD_CONTAINER="$shell" \
  BERTH_RECORD_POD="$pod" BERTH_RECORD_PORT=80 BERTH_RECORD_OUT="$out" \
  BERTH_TOOLS_DIR="${BERTH_TOOLS_DIR:-$repo/target/tools}" \
  cargo test -p berth --test streaming -- --ignored --exact record::record_containerd_vectors --nocapture)
log "vectors written to $out"
