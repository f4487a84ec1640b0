#!/usr/bin/env bash
# Builds certguard's container image without a container engine: the static binary as /certguard
# on an empty (scratch) base, USER 0:0, ENTRYPOINT ["/certguard"], CMD ["repair"], written as a
# `docker load`-able tarball: the image the Dockerfile describes (which stays the reference
# build; charts/image_test.go compares the two).
#
#   bash .ci/image.sh OUT.tar [IMAGE:TAG]     e.g. bash .ci/image.sh /tmp/certguard.tar
#   docker load -i OUT.tar   or   crane push OUT.tar REGISTRY/certguard:TAG
#
# How, with crane only (bash .ci/tools.sh crane, built from the Go module proxy):
#   1. CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -> one static file;
#   2. a layer tarball holding just /certguard (root:root, 0755, mtime 0: reproducible);
#   3. `crane append` with no base (= scratch) pushes it to a throwaway `crane registry serve` on
#      127.0.0.1 (crane mutate works on registry images only), then `crane mutate` sets the
#      entrypoint, cmd, user, platform and labels and writes the result to OUT.tar. Nothing
#      leaves loopback.
# Env: VERSION (default: git describe), GOARCH (default: go env GOARCH), GOFLAGS as usual.
set -euo pipefail
out=${1:?usage: image.sh OUT.tar [IMAGE:TAG]}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${VERSION:-$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo dev)}
arch=${GOARCH:-$(go env GOARCH)}
tag=${2:-certguard:$(printf %s "$version" | tr -c 'A-Za-z0-9_.-' '-')}
crane=$(bash "$root/.ci/tools.sh" crane)
log() { echo "[image $(date +%T)] $*" >&2; }

source "$root/.ci/registry.sh"

work=$(mktemp -d)
trap 'registry_stop; rm -rf "$work"' EXIT

log "building certguard $version for linux/$arch"
mkdir -p "$work/rootfs"
(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH="$arch" \
  go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$work/rootfs/certguard" .)
chmod 0755 "$work/rootfs/certguard"
tar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -C "$work/rootfs" -cf "$work/layer.tar" certguard

registry_start "$crane" "$work/registry.log" || exit 1
ref=127.0.0.1:$registry_port/certguard:build

log "assembling $tag (scratch + /certguard)"
"$crane" append --new_layer "$work/layer.tar" --new_tag "$ref" >/dev/null 2>"$work/append.log" \
  || { cat "$work/append.log" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
"$crane" mutate "$ref" \
  --entrypoint /certguard \
  --cmd repair \
  --user 0:0 \
  --set-platform "linux/$arch" \
  --label org.opencontainers.image.title=certguard \
  --label org.opencontainers.image.version="$version" \
  --label org.opencontainers.image.source=https://github.com/certguard/certguard \
  --tag "$tag" --output "$out" >/dev/null 2>"$work/mutate.log" \
  || { cat "$work/mutate.log" >&2; exit 1; }
log "wrote $out ($(wc -c <"$out") bytes), $tag"
