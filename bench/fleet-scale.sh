#!/usr/bin/env bash
# certguard fleet serve at scale (issues 12 and 20): N vcluster certificate Secrets plus N
# unrelated Opaque Secrets on the real test apiserver, then the real binary on them. Prints the
# floor (a bare paginated LIST of the same Secrets by a minimal client, before and after), the
# time to ready and its ratio to the floor, RSS, /metrics scrape time and size, and
# change-to-metrics latency; then one table row per N, as docs/performance.md quotes it.
#
#   bash bench/fleet-scale.sh            # N=1000 then N=10000 (the second ~6 minutes on 2 cores)
#   bash bench/fleet-scale.sh -n 200     # the small run CI makes, so the benchmark does not rot
#   bash bench/fleet-scale.sh -n 1000 --levers   # also time LIST alternatives (protobuf, metadata only, page sizes)
#   bash bench/fleet-scale.sh -n 1000 --compare /tmp/certguard-old   # this tree vs another build, 3 starts each, alternated
#   bash bench/fleet-scale.sh -n 1000 --other-bytes 65536
#   bash bench/fleet-scale.sh --serve-env GOMEMLIMIT=120MiB   # added to fleet serve's environment only
set -euo pipefail
cd "$(dirname "$0")/.."
ns=()
other=4096
levers=
compare=
while [ $# -gt 0 ]; do
  case "$1" in
    -n) ns+=("$2"); shift 2 ;;
    --other-bytes) other=$2; shift 2 ;;
    --levers) levers=1; shift ;;
    --compare) compare=$(realpath "$2"); shift 2 ;;
    --serve-env) export CERTGUARD_SCALE_SERVE_ENV="${CERTGUARD_SCALE_SERVE_ENV:-} $2"; shift 2 ;;
    *) echo "usage: $0 [-n N]... [--other-bytes BYTES] [--levers] [--compare BINARY] [--serve-env NAME=VALUE]..." >&2; exit 2 ;;
  esac
done
[ ${#ns[@]} -gt 0 ] || ns=(1000 10000)
KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash .ci/k8s-testbin.sh)}
export KUBEBUILDER_ASSETS
rows=()
for n in "${ns[@]}"; do
  echo "fleet-scale: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo '+dirty'), $(date -u +%H:%M:%S) UTC"
  # go test prints a package's output when the package ends: each N's lines come at its end.
  out=$(CERTGUARD_SCALE_N=$n CERTGUARD_SCALE_OTHER_BYTES=$other CERTGUARD_SCALE_LEVERS=$levers CERTGUARD_SCALE_COMPARE=$compare \
    nice go test -count=1 -run '^$' -bench '^BenchmarkFleetScale$' -benchtime 1x -timeout 60m . 2>&1 |
    grep -E '^(fleet-scale:|Benchmark|ok|FAIL|---|\s)') || true
  echo "$out"
  grep -q '^ok' <<<"$out" || { echo "fleet-scale: N=$n failed" >&2; exit 1; }
  mapfile -t -O ${#rows[@]} rows < <(sed -n 's/^fleet-scale: table: //p' <<<"$out")
done
# The rows of every N under one header.
echo "fleet-scale: the table"
printf '%s\n' "${rows[@]}" | awk '!(/^\| N \|/ || /^\|---/) || !seen[$0]++'
