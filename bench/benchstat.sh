#!/usr/bin/env bash
# The pki package's Go benchmarks (pki/bench_test.go: parse, ReadDir, Inspect, BuildPlan, the
# whole in-process healthy start), -count=6 with -benchmem, summarized by benchstat.
#
#   bash bench/benchstat.sh                   # print benchstat of this work tree
#   bash bench/benchstat.sh -o new.txt        # also keep the raw `go test` output
#   bash bench/benchstat.sh old.txt           # compare: benchstat old.txt <this run>
#
# BENCH (default .) selects benchmarks, COUNT (default 6) the repetitions. On a machine where
# other work runs, look at the ± column: benchstat reports the spread of the 6 runs, and the
# `~` it prints for a comparison means the difference is not significant.
set -euo pipefail
cd "$(dirname "$0")/.."
out="" base=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=${2:?}; shift 2 ;;
    -h|--help) awk 'NR > 1 { if (!/^#/) exit; sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) base=$1; shift ;;
  esac
done
benchstat=$(bash .ci/tools.sh benchstat)
# benchstat names each column after its file: call this run after the commit it measured.
label=$(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- pki || echo "+dirty")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
raw=$tmp/$label
echo "# $label ($(git diff --quiet HEAD -- pki && echo "committed" || echo "with uncommitted pki/ changes")), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
go test -run '^$' -bench "${BENCH:-.}" -benchmem -count "${COUNT:-6}" ./pki/ | tee "$raw" >&2
[ -n "$out" ] && cp "$raw" "$out"
echo
if [ -n "$base" ]; then
  b=$(basename "$base")
  [ "$b" = "$label" ] && b="$b.base"
  cp "$base" "$tmp/$b"
  (cd "$tmp" && "$benchstat" "$b" "$label")
else
  (cd "$tmp" && "$benchstat" "$label")
fi
