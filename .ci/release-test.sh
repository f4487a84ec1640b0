#!/usr/bin/env bash
# Acceptance test of the release (.ci/release.sh), offline, against a registry on loopback:
#   - the image index lists linux/amd64 and linux/arm64; the amd64 image's /certguard (crane
#     export) runs and prints the stamped version, commit and date; the arm64 one is an AArch64
#     ELF stamped with the same -X flags; entrypoint, cmd and user are the Dockerfile's;
#   - a second release, from a copy of the tree at another path, gives the same index digest;
#   - cosign verifies the index, its platform images and the chart with the public key, and
#     fails with another key; the SBOM attestation lists k8s.io/client-go at go.mod's version;
#   - helm pull of the pushed chart is byte-identical to the packaged one; helm template from the
#     OCI reference renders the chart;
#   - sha256sum -c SHA256SUMS passes; krew installs the plugin from the generated manifest and
#     the local archive (no network, KREW_ROOT in a temp dir), and `kubectl certguard check`
#     works; a corrupted archive is refused.
# Called by .ci/run; on its own: bash .ci/release-test.sh [KEEP_DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
t0=$(date +%s)
log() { echo "[release-test $(date +%T)] $*" >&2; }
failed=0
ok() { echo "  ok   $*"; }
bad() { echo "  FAIL $*"; failed=1; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
not() { ! "$@"; }
# all CMD1 -- CMD2 -- ...: every command succeeds.
all() {
  local cmd=()
  for a in "$@" --; do
    if [ "$a" = -- ]; then "${cmd[@]}" || return 1; cmd=(); else cmd+=("$a"); fi
  done
}

crane=$(bash .ci/tools.sh crane)
helm=$(bash .ci/tools.sh helm)
cosign=$(bash .ci/tools.sh cosign)
krew=$(bash .ci/tools.sh krew)
bash .ci/tools.sh cyclonedx-gomod >/dev/null
kubectl=$(command -v kubectl) || { echo "release-test: kubectl not found" >&2; exit 1; }

work=${1:-}
keep=1
if [ -z "$work" ]; then work=$(mktemp -d); keep=0; fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
source .ci/registry.sh
cleanup() {
  registry_stop
  if [ "$keep" = 0 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

# Every tool's state in the temp dir: cosign's sigstore TUF cache (cosign verify tries to fetch
# sigstore's trusted root, fails offline with a warning and goes on: a key and no tlog need none of
# it), krew's root (no index, no upgrade check), helm's registry config and caches.
export TUF_ROOT=$work/sigstore KREW_ROOT=$work/krew KREW_NO_UPGRADE_CHECK=1 DOCKER_CONFIG=$work/docker
export HELM_CACHE_HOME=$work/helm/cache HELM_CONFIG_HOME=$work/helm/config HELM_DATA_HOME=$work/helm/data

registry_start "$crane" "$work/registry.log" || exit 1
port=$registry_port

# Throw-away key pairs: the release key, and another one that must not verify.
export COSIGN_PASSWORD=release-test-$RANDOM$RANDOM
for k in release other; do
  mkdir -p "$work/keys/$k"
  (cd "$work/keys/$k" && "$cosign" generate-key-pair >/dev/null 2>&1)
done
pub=$work/keys/release/cosign.pub

version=$(tr -d ' \n' <VERSION)
chart_version=${version#v}
head=$(git rev-parse HEAD)
client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go)

log "release 1 of 2 (registry 127.0.0.1:$port/one)"
s=$(date +%s)
bash .ci/release.sh --registry "127.0.0.1:$port/one" --key "$work/keys/release/cosign.key" "$version" "$work/out1"
log "release 1: $(($(date +%s) - s)) s"

# The second release: a copy of this tree (committed state plus the same uncommitted and untracked
# files) at another path, into another repository; -trimpath and SOURCE_DATE_EPOCH make it the
# same image.
log "release 2 of 2, from a copy at another path (registry 127.0.0.1:$port/two)"
s=$(date +%s)
git clone -q --no-hardlinks "$root" "$work/src2"
git -C "$root" diff HEAD --binary >"$work/src2.diff"
if [ -s "$work/src2.diff" ]; then git -C "$work/src2" apply --whitespace=nowarn "$work/src2.diff"; fi
git ls-files --others --exclude-standard -z | xargs -0 -r cp --parents -t "$work/src2"
bash "$work/src2/.ci/release.sh" --registry "127.0.0.1:$port/two" "$version" "$work/out2"
log "release 2: $(($(date +%s) - s)) s"

out=$work/out1
ref=$(cat "$out/image.ref")               # 127.0.0.1:P/one/certguard:vX@sha256:...
repo=${ref%%:"$version"@*}
digest=${ref##*@}
digest2=$(sed 's/.*@//' "$work/out2/image.ref")
echo "index digest, release 1: $digest"
echo "index digest, release 2: $digest2"

echo "== reproducible"
check "both releases list the same SHA256SUMS (binaries, archives, SBOMs, chart, manifests)" cmp -s "$out/SHA256SUMS" "$work/out2/SHA256SUMS"
check "both releases write the same OCI layout" diff -r "$out/image" "$work/out2/image"
echo "== image index"
check "the same index digest from both releases" [ "$digest" = "$digest2" ]
check "the tag resolves to the index digest" [ "$("$crane" digest "$repo:$version")" = "$digest" ]
"$crane" manifest "$repo@$digest" >"$work/index.json"
check "an OCI image index" [ "$(jq -r .mediaType "$work/index.json")" = application/vnd.oci.image.index.v1+json ]
platforms=$(jq -r '[.manifests[].platform | .os + "/" + .architecture] | sort | join(",")' "$work/index.json")
check "platforms linux/amd64,linux/arm64 (got $platforms)" [ "$platforms" = linux/amd64,linux/arm64 ]
check "the OCI layout in OUTDIR holds the same index" \
  [ "$(jq -r '.manifests[0].digest' "$out/image/index.json")" = "$digest" ]
# What the release workflow does with it: crane push of the layout keeps the digest.
"$crane" push "$out/image" "${repo%/one/certguard}/pushed/certguard:$version" >/dev/null 2>&1 || bad "crane push OUTDIR/image"
check "crane push of the OCI layout keeps the index digest" \
  [ "$("$crane" digest "${repo%/one/certguard}/pushed/certguard:$version")" = "$digest" ]

for arch in amd64 arm64; do
  mkdir -p "$work/fs-$arch"
  "$crane" export --platform "linux/$arch" "$repo@$digest" - | tar -x -C "$work/fs-$arch"
  files=$(cd "$work/fs-$arch" && find . -mindepth 1 | sort | tr '\n' ' ')
  check "linux/$arch: the filesystem is just /certguard (got: $files)" [ "$files" = "./certguard " ]
  "$crane" config --platform "linux/$arch" "$repo@$digest" >"$work/config-$arch.json"
  check "linux/$arch: entrypoint [/certguard], cmd [repair], user 0:0, as the Dockerfile" \
    [ "$(jq -c '[.config.Entrypoint, .config.Cmd, .config.User, .os, .architecture]' "$work/config-$arch.json")" \
      = "[[\"/certguard\"],[\"repair\"],\"0:0\",\"linux\",\"$arch\"]" ]
  check "linux/$arch: the image's binary is the released one" cmp -s "$work/fs-$arch/certguard" "$out/certguard_${version}_linux_$arch"
done
grep -q '^ENTRYPOINT \["/certguard"\]$' Dockerfile && grep -q '^CMD \["repair"\]$' Dockerfile && grep -q '^USER 0:0$' Dockerfile \
  || bad "the Dockerfile's final stage no longer says ENTRYPOINT [/certguard], CMD [repair], USER 0:0"

# Run the binary of this machine's platform; read the ELF header of the other.
host=$(go env GOARCH)
case "$host" in amd64) other=arm64 other_machine=183 ;; arm64) other=amd64 other_machine=62 ;; *) echo "release-test: host $host" >&2; exit 1 ;; esac
bin=$work/fs-$host/certguard
"$bin" version >"$work/version.txt"
first=$(head -1 "$work/version.txt")
check "linux/$host image: certguard version prints 'certguard $version' (got '$first')" [ "$first" = "certguard $version" ]
"$bin" version -o json >"$work/version.json"
check "version -o json: commit is HEAD ($head)" [ "$(jq -r .commit "$work/version.json" | sed 's/-dirty$//')" = "$head" ]
check "version -o json: date is the commit's" \
  [ "$(jq -r .date "$work/version.json")" = "$(date -u -d "@$(git log -1 --format=%ct)" +%Y-%m-%dT%H:%M:%SZ)" ]
check "version -o json: k8s.io/client-go $client_go" [ "$(jq -r '.deps["k8s.io/client-go"]' "$work/version.json")" = "$client_go" ]
ob=$work/fs-$other/certguard
elf=$(od -An -tx1 -N5 "$ob" | tr -d ' \n')
machine=$(od -An -tu2 -j18 -N2 --endian=little "$ob" | tr -d ' ')
check "linux/$other: a 64-bit ELF (header $elf) for machine $other_machine (got $machine)" \
  all [ "$elf" = 7f454c4602 ] -- [ "$machine" = "$other_machine" ]
go version -m "$ob" >"$work/other.buildinfo"
check "linux/$other: build info GOARCH=$other, CGO_ENABLED=0, -trimpath=true" \
  all grep -q "GOARCH=$other\$" "$work/other.buildinfo" -- grep -q 'CGO_ENABLED=0$' "$work/other.buildinfo" \
  -- grep -q 'trimpath=true$' "$work/other.buildinfo"
# With -trimpath the build info omits -ldflags: look for the stamps the $host binary printed.
for stamp in "$(jq -r .version "$work/version.json")" "$(jq -r .commit "$work/version.json")" "$(jq -r .date "$work/version.json")"; do
  check "linux/$other: stamped with $stamp, as linux/$host" grep -q -a -F -- "$stamp" "$ob"
done

echo "== signatures and SBOM"
v() { "$cosign" verify --key "$1" --insecure-ignore-tlog --allow-http-registry --allow-insecure-registry "$2" >"$work/verify.out" 2>"$work/verify.err"; }
# v_fails WANT KEY REF: verification fails, and for the reason WANT, not a network or registry error.
v_fails() { local want=$1; shift; not v "$@" && grep -q "$want" "$work/verify.err"; }
check "cosign verify: the index with the release key" v "$pub" "$repo@$digest"
check "cosign verify: the index fails with another key" v_fails 'no matching signatures' "$work/keys/other/cosign.pub" "$repo@$digest"
amd64_digest=$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' "$work/index.json")
check "cosign verify: the linux/amd64 image (--recursive)" v "$pub" "$repo@$amd64_digest"
check "cosign verify: an unsigned image fails (release 2 was not signed)" v_fails 'no signatures found' "$pub" "$(sed 's/:v[^@]*@/@/' "$work/out2/image.ref")"
va() {
  "$cosign" verify-attestation --key "$1" --insecure-ignore-tlog --allow-http-registry --allow-insecure-registry \
    --type cyclonedx "$repo@$amd64_digest" >"$work/att-$2.out" 2>"$work/att-$2.err"
}
check "cosign verify-attestation: the linux/amd64 SBOM" va "$pub" good
check "cosign verify-attestation: fails with another key" \
  all not va "$work/keys/other/cosign.pub" wrong -- grep -q 'no matching attestations' "$work/att-wrong.err"
sbom_cg=$(head -1 "$work/att-good.out" | jq -r '.payload' 2>/dev/null | base64 -d | jq -r '.predicate.components[]? | select(.name == "k8s.io/client-go") | .version')
check "the attested SBOM lists k8s.io/client-go $client_go (got '$sbom_cg')" [ "$sbom_cg" = "$client_go" ]

echo "== chart"
chart_ref=$(cat "$out/chart.ref")         # oci://127.0.0.1:P/one/charts/certguard:X@sha256:...
chart_oci=${chart_ref%%:"$chart_version"@*}
mkdir -p "$work/pull"
"$helm" pull "$chart_oci" --version "$chart_version" --plain-http -d "$work/pull" >/dev/null 2>&1 || bad "helm pull $chart_oci"
check "helm pull is byte-identical to the packaged chart" cmp -s "$work/pull/certguard-$chart_version.tgz" "$out/certguard-$chart_version.tgz"
"$helm" show chart "$out/certguard-$chart_version.tgz" >"$work/chart.yaml"
check "Chart.yaml: version $chart_version, appVersion $version" \
  all grep -qx "version: $chart_version" "$work/chart.yaml" -- grep -qx "appVersion: $version" "$work/chart.yaml"
"$helm" template my-vc-certguard "$chart_oci" --version "$chart_version" --plain-http -n team-a >"$work/rendered.yaml" 2>"$work/template.err" || cat "$work/template.err"
check "helm template from oci:// renders the Role" grep -q '^kind: Role$' "$work/rendered.yaml"
check "cosign verify: the chart" v "$pub" "${chart_oci#oci://}@${chart_ref##*@}"

echo "== checksums, values, krew"
check "sha256sum -c SHA256SUMS" bash -c "cd '$out' && sha256sum --quiet -c SHA256SUMS"
listed=$(awk '{print $2}' "$out/SHA256SUMS" | grep -v '^vcluster-values/' | tr '\n' ' ')
want="certguard-$chart_version.tgz"
for a in amd64 arm64; do want="$want certguard_${version}_linux_$a certguard_${version}_linux_$a.cdx.json"; done
for p in darwin_amd64 darwin_arm64 linux_amd64 linux_arm64; do want="$want kubectl-certguard_${version}_$p.tar.gz"; done
want=$(echo "$want plugins/certguard.yaml" | tr ' ' '\n' | LC_ALL=C sort | tr '\n' ' ')
check "SHA256SUMS lists the binaries, SBOMs, krew archives and manifest, chart (got: $listed)" [ "$listed" = "$want" ]
check "the values files pin the image to the index digest" \
  [ "$(grep -l "certguard:$version@$digest" "$out"/vcluster-values/*.yaml | wc -l)" = "$(ls charts/vcluster-values/*.yaml | wc -l)" ]
for p in linux_amd64 linux_arm64 darwin_amd64 darwin_arm64; do
  sum=$(sha256sum "$out/kubectl-certguard_${version}_$p.tar.gz" | cut -d' ' -f1)
  check "krew manifest: the $p sha256 is its archive's" grep -q "sha256: \"$sum\"" "$out/plugins/certguard.yaml"
done

archive=$out/kubectl-certguard_${version}_linux_${host}.tar.gz
# krew install --manifest --archive reads no index and downloads nothing (the archive's sha256
# is checked against the manifest); KREW_NO_UPGRADE_CHECK skips krew's GitHub release check.
krew_install() { "$krew" install --manifest "$out/plugins/certguard.yaml" --archive "$1" </dev/null >"$2" 2>&1; }
cp "$archive" "$work/corrupt.tar.gz" && printf 'x' >>"$work/corrupt.tar.gz"
check "krew refuses an archive whose sha256 differs" \
  all not krew_install "$work/corrupt.tar.gz" "$work/krew-bad.log" -- grep -q 'checksum does not match' "$work/krew-bad.log"
if krew_install "$archive" "$work/krew.log"; then
  ok "krew install --manifest plugins/certguard.yaml --archive $(basename "$archive")"
else
  bad "krew install"; cat "$work/krew.log"
fi
"$bin" demo --dir "$work/demo" >/dev/null 2>&1
set +e
PATH=$KREW_ROOT/bin:$PATH "$kubectl" certguard check --no-secret --pki-dir "$work/demo/pki" >"$work/plugin.out" 2>&1
pcode=$?
"$bin" check --no-secret --pki-dir "$work/demo/pki" >"$work/direct.out" 2>&1
dcode=$?
set -e
check "kubectl certguard check --no-secret: exit $pcode, the same as certguard's ($dcode)" all [ "$pcode" = "$dcode" ] -- [ "$pcode" -le 4 ]
check "kubectl certguard check prints the certificate table" grep -q '^FILENAME' "$work/plugin.out"
PATH=$KREW_ROOT/bin:$PATH "$kubectl" certguard version >"$work/plugin-version.txt" 2>&1 || true
check "kubectl certguard version is the release's" [ "$(head -1 "$work/plugin-version.txt")" = "certguard $version" ]

echo "== sizes"
for f in "$out"/certguard_"$version"_linux_*; do
  case "$f" in *.json) continue ;; esac
  echo "  $(basename "$f"): $(wc -c <"$f") bytes"
done
log "$(($(date +%s) - t0)) s in all"
if [ "$failed" != 0 ]; then echo "release-test: FAILED" >&2; exit 1; fi
echo "release-test: ok"
