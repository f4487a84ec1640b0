#!/usr/bin/env bash
# Sets the version everything names: the VERSION file, and from it the image tag in the values
# files, the README and docs/, the add-on chart's version and appVersion, and the krew manifest's
# version and URLs. Run it, commit, tag, then release (.ci/release.sh refuses a VERSION that
# differs from the file). charts/version_test.go checks that they all agree.
#
#   bash .ci/set-version.sh v0.2.0
set -euo pipefail
v=${1:?usage: set-version.sh vMAJOR.MINOR.PATCH[-PRE]}
[[ $v =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || { echo "set-version.sh: $v: want vMAJOR.MINOR.PATCH[-PRE]" >&2; exit 2; }
cd "$(dirname "$0")/.."
echo "$v" >VERSION
img='ghcr\.io/certguard/certguard:v[0-9][0-9A-Za-z.+-]*'
sed -i "s|$img|ghcr.io/certguard/certguard:$v|g" README.md docs/*.md charts/vcluster-values/*.yaml
sed -i "s|^v=v.*|v=$v|" README.md docs/*.md
sed -i -e "s|^version: .*|version: ${v#v}|" -e "s|^appVersion: .*|appVersion: \"$v\"|" charts/certguard/Chart.yaml
sed -i -e "s|^  version: v.*|  version: $v|" \
  -e "s|releases/download/v[^/]*/kubectl-certguard_v[^_]*_|releases/download/$v/kubectl-certguard_${v}_|" plugins/certguard.yaml
git --no-pager diff --stat
