#!/usr/bin/env bash
# The release: every artifact a user pulls, verifies and installs, built without a container
# engine and without the internet (tools from the Go module proxy via .ci/tools.sh).
#
#   bash .ci/release.sh [--registry HOST:PORT/PATH] [--key cosign.key] VERSION OUTDIR
#
# VERSION must equal the committed VERSION file (bump both with .ci/set-version.sh first), so
# that the values files and the README name the image being released. Dates come from the commit
# (SOURCE_DATE_EPOCH = commit time): two runs on one commit build the same files (all of
# SHA256SUMS) and the same image index digest; only signatures differ.
#
# OUTDIR gets (the GitHub release assets):
#   certguard_VERSION_linux_{amd64,arm64}          static binaries (CGO_ENABLED=0, -trimpath)
#   kubectl-certguard_VERSION_{linux,darwin}_{amd64,arm64}.tar.gz   krew archives
#   plugins/certguard.yaml                         krew manifest, sha256 of each archive filled in
#   certguard_VERSION_linux_{amd64,arm64}.cdx.json CycloneDX SBOM, from each binary's build info
#   certguard-X.Y.Z.tgz                            the add-on chart, version = appVersion = VERSION
#   image/                                         OCI layout: the linux/amd64 + linux/arm64 index
#   image.ref                                      REGISTRY/certguard:VERSION@sha256:<index digest>
#   chart.ref                                      oci://REGISTRY/charts/certguard:X.Y.Z@sha256:<digest>
#   vcluster-values/*.yaml                         the values files, image pinned to that digest
#   SHA256SUMS                                     sha256sum -c of the files above but image/ and *.ref
#
# and pushes to the registry: the index as REGISTRY/certguard:VERSION (each platform also as
# :VERSION-linux-ARCH), the chart as oci://REGISTRY/charts/certguard:X.Y.Z. With --key (a cosign
# key pair from `cosign generate-key-pair`, its password in COSIGN_PASSWORD) it signs the index
# (and its platform manifests) and the chart, and attests each platform image with its SBOM; no
# transparency-log upload (keyless signing with Rekor is the GitHub workflow's job,
# .github/workflows/release.yaml). Without --registry a registry on loopback is started for the
# run and thrown away (the OCI layout in OUTDIR is then the image).
#
# Env: RELEASE_REGISTRY, RELEASE_COSIGN_KEY (the flags' defaults), IMAGE_REPO (the published
# image name for the values files, default ghcr.io/certguard/certguard), SOURCE_DATE_EPOCH.
# Exit: 0 done, 1 a step failed, 2 usage.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "[release $(date +%T)] $*" >&2; }
die() { echo "release.sh: $*" >&2; exit 1; }
usage() { echo "usage: release.sh [--registry HOST:PORT/PATH] [--key cosign.key] VERSION OUTDIR" >&2; exit 2; }

registry=${RELEASE_REGISTRY:-}
key=${RELEASE_COSIGN_KEY:-}
image_repo=${IMAGE_REPO:-ghcr.io/certguard/certguard}
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --registry) [ $# -ge 2 ] || usage; registry=$2; shift 2 ;;
    --registry=*) registry=${1#*=}; shift ;;
    --key) [ $# -ge 2 ] || usage; key=$2; shift 2 ;;
    --key=*) key=${1#*=}; shift ;;
    -h|--help) usage ;;
    -*) echo "release.sh: unknown flag $1" >&2; usage ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -eq 2 ] || usage
version=${args[0]}
out=${args[1]}
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || { echo "release.sh: VERSION $version: want vMAJOR.MINOR.PATCH[-PRE]" >&2; exit 2; }
committed=$(tr -d ' \n' <"$root/VERSION")
[ "$version" = "$committed" ] || die "VERSION file says $committed, not $version: run bash .ci/set-version.sh $version and commit first"
[ -z "$key" ] || [ -f "$key" ] || die "--key $key: no such file"
chart_version=${version#v}

cd "$root"
commit=$(git rev-parse HEAD)
# A release from a dirty tree says so in `certguard version`.
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then commit=$commit-dirty; fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}
date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w -X main.version=$version -X main.commit=$commit -X main.date=$date"

crane=$(bash .ci/tools.sh crane)
helm=$(bash .ci/tools.sh helm)
cyclonedx=$(bash .ci/tools.sh cyclonedx-gomod)
cosign=
[ -z "$key" ] || cosign=$(bash .ci/tools.sh cosign)

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
source .ci/registry.sh
trap 'registry_stop; rm -rf "$work"' EXIT
# quiet CMD...: runs CMD, shows its output only when it fails.
quiet() { "$@" >"$work/cmd.log" 2>&1 || { cat "$work/cmd.log" >&2; die "failed: $*"; }; }

if [ -z "$registry" ]; then
  registry_start "$crane" "$work/registry.log" || die "crane registry did not start"
  registry=127.0.0.1:$registry_port
  log "no --registry: using a throwaway one on $registry"
fi
registry=${registry%/}
helm_http=()
cosign_http=()
case "$registry" in
  127.0.0.1:*|localhost:*|127.0.0.1/*|localhost/*)
    helm_http=(--plain-http)
    cosign_http=(--allow-http-registry --allow-insecure-registry) ;;
esac
repo=$registry/certguard

log "certguard $version, commit $commit, date $date (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"

# 1. Binaries: certguard for the image, kubectl-certguard archives for krew.
for p in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64; do
  os=${p%/*} arch=${p#*/}
  log "go build $os/$arch"
  bin=$work/bin/$os-$arch/certguard
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOFLAGS= go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$bin" .
  if [ "$os" = linux ]; then cp "$bin" "$out/certguard_${version}_${os}_${arch}"; fi
  mkdir -p "$work/krew/$os-$arch"
  cp "$bin" "$work/krew/$os-$arch/kubectl-certguard"
  chmod 0755 "$work/krew/$os-$arch/kubectl-certguard"
  tar --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --sort=name \
    -C "$work/krew/$os-$arch" -cf - kubectl-certguard | gzip -n -9 >"$out/kubectl-certguard_${version}_${os}_${arch}.tar.gz"
done

# 2. The krew manifest: the committed template with each archive's sha256.
mkdir -p "$out/plugins"
cp plugins/certguard.yaml "$work/certguard.yaml"
for p in linux_amd64 linux_arm64 darwin_amd64 darwin_arm64; do
  sum=$(sha256sum "$out/kubectl-certguard_${version}_$p.tar.gz" | cut -d' ' -f1)
  sed -i "s|@SHA256:$p@|$sum|" "$work/certguard.yaml"
done
if grep -q '@SHA256:' "$work/certguard.yaml"; then die "plugins/certguard.yaml: a platform without an archive"; fi
grep -q "^  version: $version\$" "$work/certguard.yaml" || die "plugins/certguard.yaml: spec.version is not $version (run .ci/set-version.sh)"
mv "$work/certguard.yaml" "$out/plugins/certguard.yaml"

# 3. SBOMs, from what each binary records of its build (module versions, Go version).
for arch in amd64 arm64; do
  log "SBOM linux/$arch"
  quiet "$cyclonedx" bin -json -noserial -notimestamp -version "$version" -output "$out/certguard_${version}_linux_${arch}.cdx.json" \
    "$out/certguard_${version}_linux_${arch}"
done

# 4. The image: per platform a scratch image with one layer holding /certguard (root:root, 0755,
# mtime 0, OCI media types, no creation time), then an OCI index of both.
platform_refs=()
for arch in amd64 arm64; do
  log "image linux/$arch"
  mkdir -p "$work/rootfs-$arch"
  cp "$out/certguard_${version}_linux_${arch}" "$work/rootfs-$arch/certguard"
  chmod 0755 "$work/rootfs-$arch/certguard"
  tar --owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name -C "$work/rootfs-$arch" -cf "$work/layer-$arch.tar" certguard
  tag=$repo:$version-linux-$arch
  quiet "$crane" append --oci-empty-base --platform "linux/$arch" -f "$work/layer-$arch.tar" -t "$tag"
  # USER 0:0: the k0s pki is root-owned with mode 0600 and the init container removes files in it.
  quiet "$crane" mutate "$tag" \
    --entrypoint /certguard --cmd repair --user 0:0 --set-platform "linux/$arch" \
    --label org.opencontainers.image.title=certguard \
    --label org.opencontainers.image.version="$version" \
    --label org.opencontainers.image.revision="$commit" \
    --label org.opencontainers.image.created="$date" \
    --label org.opencontainers.image.source=https://github.com/certguard/certguard \
    -t "$tag"
  platform_refs+=(-m "$repo@$("$crane" digest "$tag")")
done
quiet "$crane" index append "${platform_refs[@]}" -t "$repo:$version"
digest=$("$crane" digest "$repo:$version")
rm -rf "$out/image"
quiet "$crane" pull --format=oci "$repo@$digest" "$out/image"
echo "$repo:$version@$digest" >"$out/image.ref"
log "image index $repo:$version@$digest"

# 5. Signature and SBOM attestations (key-based, no tlog).
if [ -n "$key" ]; then
  log "cosign sign the index (and its platform manifests), attest the SBOMs"
  [ -n "${COSIGN_PASSWORD+set}" ] || die "--key: set COSIGN_PASSWORD (empty for a key without one)"
  quiet "$cosign" sign --key "$key" --tlog-upload=false --recursive --yes "${cosign_http[@]}" "$repo@$digest"
  for arch in amd64 arm64; do
    pd=$("$crane" digest "$repo:$version-linux-$arch")
    quiet "$cosign" attest --key "$key" --tlog-upload=false --yes "${cosign_http[@]}" --type cyclonedx \
      --predicate "$out/certguard_${version}_linux_${arch}.cdx.json" "$repo@$pd"
  done
fi

# 6. The add-on chart: version and appVersion from VERSION, pushed as OCI.
log "helm package + push charts/certguard $chart_version"
quiet "$helm" package charts/certguard --version "$chart_version" --app-version "$version" -d "$work/chart"
# helm package stamps the packaging time on every file: repack with the commit's time, sorted, so
# that the chart is as reproducible as the rest.
mkdir -p "$work/chart/x"
tar -xzmf "$work/chart/certguard-$chart_version.tgz" -C "$work/chart/x"
tar --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --sort=name --mode=go-w \
  -C "$work/chart/x" -cf - certguard | gzip -n -9 >"$out/certguard-$chart_version.tgz"
"$helm" push "$out/certguard-$chart_version.tgz" "oci://$registry/charts" "${helm_http[@]}" >"$work/push.log" 2>&1 \
  || { cat "$work/push.log" >&2; die "helm push"; }
chart_digest=$(sed -n 's/^Digest: *//p' "$work/push.log")
[ -n "$chart_digest" ] || { cat "$work/push.log" >&2; die "helm push printed no digest"; }
echo "oci://$registry/charts/certguard:$chart_version@$chart_digest" >"$out/chart.ref"
if [ -n "$key" ]; then
  quiet "$cosign" sign --key "$key" --tlog-upload=false --yes "${cosign_http[@]}" "$registry/charts/certguard@$chart_digest"
fi

# 7. The values files, the image pinned to the index digest under its published name.
mkdir -p "$out/vcluster-values"
for f in charts/vcluster-values/*.yaml; do
  sed "s|ghcr\.io/certguard/certguard:v[^ ]*|$image_repo:$version@$digest|" "$f" >"$out/vcluster-values/$(basename "$f")"
  grep -q "$image_repo:$version@$digest" "$out/vcluster-values/$(basename "$f")" || die "$f: no image line to pin"
done

# 8. Checksums of every file a user downloads.
(cd "$out" && find . -maxdepth 2 -type f \( -name 'certguard_*' -o -name 'kubectl-certguard_*' -o -name 'certguard-*.tgz' \
  -o -path './plugins/*' -o -path './vcluster-values/*' \) | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
log "done: $out ($(wc -l <"$out/SHA256SUMS") files in SHA256SUMS)"
