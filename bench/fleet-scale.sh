#!/usr/bin/env bash
# certguard fleet serve at scale (issue 12): N vcluster certificate Secrets plus N unrelated
# Opaque Secrets on the real test apiserver, then the real binary on them. Prints the time to
# ready, RSS, /metrics scrape time and size, and change-to-metrics latency.
#
#   bash bench/fleet-scale.sh            # N=10000 (about 10 minutes on 2 cores, most of it creating Secrets)
#   bash bench/fleet-scale.sh -n 200     # the small run CI makes, so the benchmark does not rot
#   bash bench/fleet-scale.sh -n 1000 --other-bytes 65536
#   bash bench/fleet-scale.sh --serve-env GOMEMLIMIT=120MiB   # added to fleet serve's environment only
set -euo pipefail
cd "$(dirname "$0")/.."
n=10000
other=4096
while [ $# -gt 0 ]; do
  case "$1" in
    -n) n=$2; shift 2 ;;
    --other-bytes) other=$2; shift 2 ;;
    --serve-env) export CERTGUARD_SCALE_SERVE_ENV="${CERTGUARD_SCALE_SERVE_ENV:-} $2"; shift 2 ;;
    *) echo "usage: $0 [-n N] [--other-bytes BYTES] [--serve-env NAME=VALUE]..." >&2; exit 2 ;;
  esac
done
KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(bash .ci/k8s-testbin.sh)}
export KUBEBUILDER_ASSETS
echo "fleet-scale: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo '+dirty')"
CERTGUARD_SCALE_N=$n CERTGUARD_SCALE_OTHER_BYTES=$other \
  nice go test -count=1 -run '^$' -bench '^BenchmarkFleetScale$' -benchtime 1x -timeout 60m . | grep -E '^(fleet-scale:|Benchmark|ok|FAIL|---|\s)'
