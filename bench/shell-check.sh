#!/usr/bin/env bash
# The check a user would write instead of certguard, as an init-container script: is any of
# k0s's six one-year leaves due within 120 days, and do the Secret's 14 k0s keys hold the same
# bytes as the disk? Exit 0 when all is well (bench/run.sh times it against `certguard repair`).
#
#   PKI=/data/k0s/pki NS=team-a SECRET=my-vc-certs KUBECONFIG=... bash bench/shell-check.sh
#
# It does less than certguard's healthy path (no CA, key-match or issuer check; 6 of ~20
# certificates), so the comparison flatters the shell. KUBECTL picks the kubectl binary and
# KUBECTL_CACHE_DIR its discovery cache (an empty one is what a fresh init container has).
set -euo pipefail
: "${PKI:?}" "${NS:?}" "${SECRET:?}"
KUBECTL=${KUBECTL:-kubectl}
RENEW_BEFORE=$((120 * 24 * 3600))
due=0

for leaf in server k0s-api admin scheduler ccm konnectivity; do
  if ! openssl x509 -checkend "$RENEW_BEFORE" -noout -in "$PKI/$leaf.crt" >/dev/null; then
    echo "$leaf.crt expires within 120 days" >&2
    due=1
  fi
done

json=$("$KUBECTL" ${KUBECTL_CACHE_DIR:+--cache-dir="$KUBECTL_CACHE_DIR"} -n "$NS" get secret "$SECRET" -o json)
k0s_keys='admin.crt admin.key ccm.conf ccm.crt ccm.key k0s-api.crt k0s-api.key konnectivity.conf
  konnectivity.crt konnectivity.key scheduler.crt scheduler.key server.crt server.key'
while read -r key value; do
  case " ${k0s_keys//$'\n'/ } " in *" $key "*) ;; *) continue ;; esac
  if ! base64 -d <<<"$value" | cmp -s - "$PKI/$key"; then
    echo "Secret key $key differs from $PKI/$key" >&2
    due=1
  fi
done < <(jq -r '.data | to_entries[] | "\(.key) \(.value)"' <<<"$json")
exit "$due"
