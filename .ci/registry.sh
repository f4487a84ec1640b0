# A throwaway OCI registry (crane registry serve) on loopback, in this process tree only, for the
# scripts that build, push and check images without a container engine or the internet. Sourced
# by .ci/image.sh, .ci/release.sh and .ci/release-test.sh:
#
#   source "$root/.ci/registry.sh"
#   trap 'registry_stop; rm -rf "$work"' EXIT
#   registry_start "$crane" "$work/registry.log" || exit 1   # then 127.0.0.1:$registry_port
#
# Not a subshell ($(registry_start) would lose the pid): call it as a command.
registry_pid=
registry_port=

# registry_start CRANE LOG starts the registry on a free port, which it reports in LOG, and
# waits (up to 10 s) for that line. On failure it prints LOG and returns 1.
registry_start() {
  local crane=$1 log=$2
  "$crane" registry serve --address 127.0.0.1:0 >"$log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 1 100); do
    registry_port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$log" | head -1)
    [ -n "$registry_port" ] && return 0
    kill -0 "$registry_pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log" >&2
  echo "crane registry serve did not start" >&2
  return 1
}

# registry_stop stops the registry registry_start started, if any; safe to call twice.
registry_stop() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=
  fi
}
