#!/usr/bin/env bash
# certguard's performance, side by side with the shell script a user would write instead, on one
# vcluster v0.25 + k0s PKI (RSA-2048, 43 files) and one real kube-apiserver + etcd on 127.0.0.1.
#
#   bash bench/run.sh [-n RUNS] [--rev GIT-REV] [--keep]
#
#   -n RUNS      measured runs per row (default 50; 3 unmeasured warm-up runs come first)
#   --rev REV    benchmark certguard as of a commit (built from `git archive REV`) instead of
#                the work tree, e.g. --rev HEAD for figures that belong to a commit
#   --keep       keep the work directory (PKI, kubeconfigs, raw results) and print its path
#
# Prints the machine (cores, load, commit), the release binary's size and a table: median and p90
# wall time, median CPU time, peak RSS, API requests per run (the apiserver's audit log) and the
# speed-up against the shell script; then `certguard check --no-secret` on 30, 300 and 3,000
# certificates. Needs the test binaries (`bash .ci/k8s-testbin.sh`: ~10 min the first time),
# Go, kubectl, openssl and jq (installed with apt-get when missing). bench/README.md explains
# every figure.
set -euo pipefail
cd "$(dirname "$0")/.."

N=50 REV="" KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=${2:?}; shift 2 ;;
    --rev) REV=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 { if (!/^#/) exit; sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
WARMUP=3
log() { echo "[bench $(date +%T)] $*" >&2; }

# Tools. kubectl: the 1.33 client when the google-cloud-sdk package has it (within skew of the
# 1.34 apiserver; its `kubectl` is a dispatcher that adds a hop), else whatever is on PATH.
need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
command -v jq >/dev/null || need_apt+=(jq)
command -v cmp >/dev/null || need_apt+=(diffutils)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
KUBECTL=${KUBECTL:-}
if [ -z "$KUBECTL" ]; then
  KUBECTL=/usr/lib/google-cloud-sdk/bin/kubectl.1.33
  [ -x "$KUBECTL" ] || KUBECTL=$(command -v kubectl) || { echo "run.sh: kubectl not found (set KUBECTL)" >&2; exit 1; }
fi
export KUBECTL
export KUBEBUILDER_ASSETS
KUBEBUILDER_ASSETS=$(bash .ci/k8s-testbin.sh)

# The work dir goes on a tmpfs when there is one: certguard warns (one more log line) when the
# pki dir is on the container's root filesystem, which a real pod's data volume never is.
base=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
WORK=$(mktemp -d "$base/certguard-bench.XXXXXX")
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  if [ "$KEEP" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# Builds: the harness from the work tree (benchtool: apiserver and PKI; timeit: timing, standard
# library only so that its own RSS stays below what it measures); certguard exactly as the Dockerfile builds it.
log "building benchtool, timeit and certguard${REV:+ at $REV}"
go build -o "$WORK/benchtool" ./bench/benchtool
go build -o "$WORK/timeit" ./bench/timeit
BT=$WORK/benchtool TI=$WORK/timeit
# The commit is resolved once, here: others may commit while this runs.
src=.
if [ -n "$REV" ]; then
  commit=$(git rev-parse --verify "$REV^{commit}")
  what="$(git rev-parse --short=12 "$commit") (git archive of $REV)"
  src=$WORK/src
  mkdir -p "$src"
  git archive "$commit" | tar -x -C "$src"
else
  what="work tree at $(git rev-parse --short=12 HEAD)"
  dirty=$(git status --porcelain --untracked-files=no | wc -l)
  if [ "$dirty" -gt 0 ]; then what="$what + $dirty uncommitted changed files"; fi
fi
(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$WORK/certguard" .)
CG=$WORK/certguard

# The apiserver, the PKI and the Secret. serve stops when its stdin closes, so it cannot outlive
# this script.
log "starting kube-apiserver + etcd (kube/kubetest) and writing the PKI"
mkfifo "$WORK/serve.ctl"
"$BT" serve -dir "$WORK" <"$WORK/serve.ctl" >"$WORK/serve.log" 2>&1 &
serve_pid=$!
exec 3>"$WORK/serve.ctl"
for _ in $(seq 1200); do
  [ -s "$WORK/env" ] && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$WORK/env" ] || { echo "run.sh: apiserver did not come up in 120 s" >&2; cat "$WORK/serve.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$WORK/env"
export PKI NS SECRET

R=$WORK/results.jsonl
t() { "$TI" time -n "$N" -warmup "$WARMUP" -out "$R" "$@"; }
# certguard reads $KUBECONFIG like kubectl does; each row's warm-up runs go as another user.
repair=("$CG" repair --pki-dir "$PKI" --vcluster-name "$RELEASE" --namespace "$NS")

log "sanity: one healthy repair, one shell check"
KUBECONFIG=$KC_SANITY "${repair[@]}" >&2
KUBECONFIG=$KC_SANITY KUBECTL_CACHE_DIR=$WORK/kubectl-cache-sanity bash bench/shell-check.sh

log "timing $N runs per row (+$WARMUP warm-up)"
t -label "/bin/true (floor: fork+exec, timer's RSS)" -- /bin/true
t -label "certguard version (process start only)" -- "$CG" version
t -label "certguard check --no-secret (43 files, no API)" -- "$CG" check --no-secret --pki-dir "$PKI"
KUBECONFIG=$KC_CERTGUARD \
  t -label "certguard repair, healthy" -user certguard -warmup-env KUBECONFIG="$KC_CERTGUARD_WARMUP" -- "${repair[@]}"
KUBECONFIG=$KC_SHELL_WARM KUBECTL_CACHE_DIR=$WORK/kubectl-cache \
  t -label "shell: openssl+kubectl+jq, warm kubectl cache" -user shell-warm -warmup-env KUBECONFIG="$KC_SHELL_WARM_WARMUP" \
  -- bash bench/shell-check.sh
KUBECONFIG=$KC_SHELL_COLD \
  t -label "shell: openssl+kubectl+jq, empty kubectl cache" -user shell-cold -warmup-env KUBECONFIG="$KC_SHELL_COLD_WARMUP" \
  -fresh-env KUBECTL_CACHE_DIR -- bash bench/shell-check.sh

log "check --no-secret on 30, 300 and 3,000 certificates"
for c in 30 300 3000; do
  counts=$("$BT" tree -from "$PKI" -certs "$c" -out "$WORK/tree-$c")
  read -r certs files <<<"$counts"
  t -label "check --no-secret, $c certs" -certs "$certs" -files "$files" -- "$CG" check --no-secret --pki-dir "$WORK/tree-$c"
done

exec 3>&-   # serve writes requests.json and stops
wait "$serve_pid"
serve_pid=""

size=$(stat -c %s "$CG")
echo
echo "## certguard benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "- certguard: $what"
echo "- machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(uname -sr), $(go env GOVERSION)"
echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); the load column is the 1-minute figure before→after each row (other work on the machine stretches wall time and p90, much less CPU time)"
echo "- apiserver: $("$KUBEBUILDER_ASSETS/kube-apiserver" --version) + etcd $("$KUBEBUILDER_ASSETS/etcd" --version | sed -n 's/^etcd Version: //p') on 127.0.0.1; kubectl $("$KUBECTL" version --client -o json | jq -r .clientVersion.gitVersion)"
echo "- release binary (CGO_ENABLED=0 -trimpath -ldflags '-s -w'): $size bytes = $(awk -v s="$size" 'BEGIN{printf "%.1f MB = %.1f MiB", s/1e6, s/1048576}')$(file -b "$CG" 2>/dev/null | grep -q 'statically linked' && echo ", statically linked")"
echo
"$TI" report -results "$R" -requests "$WORK/requests.json" -baseline "shell: openssl+kubectl+jq, warm kubectl cache"
