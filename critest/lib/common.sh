# shellcheck shell=bash disable=SC2034  # the variables are for the sourcing scripts
# Shared by the critest/ scripts: paths, logging, waiting and pid handling.
# Source it after setting `log_tag`; it sets no shell options of its own.

critest_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repo_dir=$(cd "$critest_dir/.." && pwd)
# Everything the harness writes lives below one directory.
state_root=${BERTH_CRITEST_STATE:-$repo_dir/target/critest}
tools_bin=${BERTH_TOOLS_DIR:-$repo_dir/target/tools}/bin
registry_port=${BERTH_REGISTRY_PORT:-5000}
registry_addr=127.0.0.1:$registry_port

log() { echo "${log_tag:-critest}: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# wait_until SECONDS CMD...: runs CMD every 0.2 s until it succeeds; fails
# when SECONDS pass first.
# go_build_env WORK: sets go_bin and exports what a once-per-machine build of Go
# programs through the module proxy needs, with Go's build and module caches
# under WORK. They are no use once the binaries are in the machine cache: in
# WORK they go with it instead of holding gigabytes (about 7 for Kubernetes)
# on the disk the Rust build and the tests need next.
go_build_env() {
  go_bin=$(command -v go || true)
  [ -n "$go_bin" ] || go_bin=/usr/local/go/bin/go
  [ -x "$go_bin" ] || die "no go toolchain (looked on PATH and at /usr/local/go/bin/go)"
  # Never let go fetch another toolchain (the modules' go directives are older
  # than the installed one); no cgo: static binaries, no C headers needed.
  export GOTOOLCHAIN=local CGO_ENABLED=0 GO111MODULE=on GOFLAGS="-buildvcs=false -modcacherw"
  export GOCACHE=$1/go-cache GOMODCACHE=$1/go-mod
}

wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

registry_answers() { curl -fsS -o /dev/null --max-time 2 "http://$registry_addr/v2/" 2>/dev/null; }

# pid_is_ours PIDFILE MARKER: true when the pid recorded in PIDFILE is alive
# and its command line still contains MARKER (a path only our instance uses),
# so a recycled pid is never mistaken for the process we started.
pid_is_ours() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$2"
}

# start_daemon PIDFILE MARKER LOG CMD...: starts CMD in the background with
# output to LOG, records its pid in PIDFILE and waits until the pid runs CMD
# (until exec, the forked pid still runs this shell).
start_daemon() {
  local pidfile=$1 marker=$2 logfile=$3
  shift 3
  # fd 9 is critest/run's lock; a daemon must not keep it.
  "$@" </dev/null >>"$logfile" 2>&1 9>&- &
  echo $! >"$pidfile"
  wait_until 10 pid_is_ours "$pidfile" "$marker" || {
    tail -n 20 "$logfile" >&2 || true
    die "$1 exited at once (log: $logfile)"
  }
}

# stop_pid PIDFILE MARKER [GRACE_SECONDS]: ends the process recorded in
# PIDFILE (TERM, then KILL after the grace period) if it is still ours, then
# removes the pid file.
stop_pid() {
  local pidfile=$1 marker=$2 grace=${3:-10} pid
  if pid_is_ours "$pidfile" "$marker"; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until "$grace" test ! -e "/proc/$pid"; then
      log "pid $pid did not stop within ${grace}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      wait_until 5 test ! -e "/proc/$pid" || log "pid $pid is still there"
    fi
  fi
  rm -f "$pidfile"
}
