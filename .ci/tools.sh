#!/usr/bin/env bash
# Builds (or reuses) one pinned Go tool from the Go module proxy and prints its path.
#
#   helm=$(bash .ci/tools.sh helm)
#
# Each tool is cached in $HOME/.cache/certguard-tools/<name>-<version>/, so a warm run costs
# nothing and a version bump rebuilds only that tool.
set -euo pipefail
name=${1:?usage: tools.sh helm|staticcheck|promtool|crane|cosign|krew|cyclonedx-gomod|benchstat}
ldflags="-s -w"
case "$name" in
  helm)        mod=helm.sh/helm/v3/cmd/helm; ver=v3.22.0
               ldflags="$ldflags -X helm.sh/helm/v3/internal/version.version=$ver" ;;
  staticcheck) mod=honnef.co/go/tools/cmd/staticcheck; ver=v0.8.2 ;;
  promtool)    mod=github.com/prometheus/prometheus/cmd/promtool; ver=v0.316.0 ;;
  crane)       mod=github.com/google/go-containerregistry/cmd/crane; ver=v0.22.1 ;;
  # The release (.ci/release.sh): sign and verify, the krew plugin, the SBOM. cosign is the big
  # one (see .ci/run for the measured cold build times).
  cosign)      mod=github.com/sigstore/cosign/v2/cmd/cosign; ver=v2.6.5
               ldflags="$ldflags -X sigs.k8s.io/release-utils/version.gitVersion=$ver" ;;
  krew)        mod=sigs.k8s.io/krew/cmd/krew; ver=v0.4.3
               ldflags="$ldflags -X sigs.k8s.io/krew/internal/version.gitTag=$ver" ;;
  cyclonedx-gomod) mod=github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod; ver=v1.10.0 ;;
  benchstat)   mod=golang.org/x/perf/cmd/benchstat; ver=latest ;;
  *) echo "tools.sh: unknown tool $name" >&2; exit 2 ;;
esac
dir=${XDG_CACHE_HOME:-$HOME/.cache}/certguard-tools/$name-$ver
if [ ! -x "$dir/$name" ]; then
  echo "[tools $(date +%T)] building $name $ver" >&2
  GOBIN="$dir" GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 go install -ldflags "$ldflags" "$mod@$ver" >&2
fi
echo "$dir/$name"
