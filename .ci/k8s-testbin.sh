#!/usr/bin/env bash
# Builds (or reuses) a real kube-apiserver and etcd from the Go module proxy only, and prints the
# directory that holds them (the layout controller-runtime's envtest wants in KUBEBUILDER_ASSETS).
#
#   KUBEBUILDER_ASSETS=$(bash .ci/k8s-testbin.sh)
#
# Cached under $HOME/.cache/k8s-testbin/k8s-<v>-etcd-<v>: a cold build takes ~9-10 min on 2 cores,
# a warm run well under a second.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.34.4}   # must match the k8s.io/* v0.34.x pinned in go.mod
ETCD_VERSION=${ETCD_VERSION:-3.6.5}
CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/k8s-testbin
OUT=$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
log() { echo "[k8s-testbin $(date +%T)] $*" >&2; }

# No -trimpath and the default CGO setting on purpose: the k8s.io packages compiled here are then
# reused from GOCACHE by the project's own test builds (measured 77 s instead of 233 s cold).
export GOFLAGS=-mod=mod GOWORK=off GOTOOLCHAIN=local
mkdir -p "$OUT"

# The version is captured first: `… | grep -q` exits at the first match, and under pipefail the
# writer's SIGPIPE made the check fail now and then, rebuilding a good binary mid-run.
if ! [[ "$("$OUT/etcd" --version 2>/dev/null || true)" == *"etcd Version: $ETCD_VERSION"* ]]; then
  log "building etcd $ETCD_VERSION"
  w=$(mktemp -d)
  # etcd's server module has replace directives, so `go install pkg@version` is refused:
  # a one-file module around etcdmain builds the same server.
  cat > "$w/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$w" && go mod init etcdbuild >/dev/null 2>&1 \
    && go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" "go.etcd.io/etcd/api/v3@v$ETCD_VERSION" \
      "go.etcd.io/etcd/client/pkg/v3@v$ETCD_VERSION" "go.etcd.io/etcd/client/v3@v$ETCD_VERSION" \
      "go.etcd.io/etcd/pkg/v3@v$ETCD_VERSION" >/dev/null 2>&1 \
    && go mod tidy >/dev/null 2>&1 \
    && go build -ldflags '-s -w' -o "$OUT/etcd.tmp" . && mv "$OUT/etcd.tmp" "$OUT/etcd")
  rm -rf "$w"
fi

if [[ "$("$OUT/kube-apiserver" --version 2>/dev/null || true)" != "Kubernetes v$K8S_VERSION" ]]; then
  log "building kube-apiserver v$K8S_VERSION (cold: ~9 min on 2 cores)"
  dir=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { echo "k8s-testbin: download of k8s.io/kubernetes@v$K8S_VERSION failed" >&2; exit 1; }
  src=$(mktemp -d)
  cp -r "$dir/." "$src/" && chmod -R u+w "$src" && rm -f "$src/go.work" "$src/go.work.sum"
  # The module zip has no ./staging tree: point each staging replace at the published v0.X.Y module.
  sed -i -E "s#^(\s+)(k8s\.io/[a-z0-9-]+) => \./staging/src/k8s\.io/[a-z0-9-]+#\1\2 => \2 v0.${K8S_VERSION#1.}#" "$src/go.mod"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  v=k8s.io/component-base/version
  ldf="-s -w -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  ldf="$ldf -X $v.buildDate=1970-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION"
  (cd "$src" && go build -ldflags "$ldf" -o "$OUT/kube-apiserver.tmp" ./cmd/kube-apiserver) \
    && mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
  rm -rf "$src"
fi
echo "$OUT"
