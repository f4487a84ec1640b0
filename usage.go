package main

import (
	"flag"
	"fmt"
	"strings"
)

const usage = `certguard keeps vcluster's k0s control plane alive when its certificates expire.

k0s signs its one-year leaves with vcluster's CA (CN "kubernetes"), never renews them, and
vcluster copies them from the Secret <release>-certs back over /data/k0s/pki on every start.
certguard, run as an init container before k0s, removes exactly what must go so that fresh
certificates are generated on boot.

Usage:
  certguard repair [flags]     the init container: check, back up, repair
  certguard check [flags]      print every certificate, disk against Secret
  certguard watch [flags]      the sidecar: metrics, Events, a restart before expiry
  certguard fleet [flags]      one row per vcluster certificate Secret on the host cluster
  certguard fleet serve        the host-side service: every vcluster's metrics, /plan
  certguard fleet plan         when each vcluster's k0s leaves fall due, and its restart window
  certguard demo [--dir DIR]   repair an expired vcluster-style PKI in a temp dir, no cluster
  certguard version

Examples:
  $ certguard repair --vcluster-name=my-vc
      In the vcluster pod, before k0s: when k0s's leaves are expired or due within 120 days,
      remove the 14 k0s leaf files from /data/k0s/pki and from Secret my-vc-certs, after a
      backup in /data/k0s/pki.old/<UTC time>/. k0s re-signs them with the same CA on boot.

  $ certguard repair --dry-run -o json
      Print the plan, change nothing.

  $ certguard check --no-secret --pki-dir ./pki
      Table of every certificate in a directory, no cluster needed.

  $ certguard check --vcluster-name=my-vc --namespace=team-a --kubeconfig ~/.kube/config
      The same with the Secret, and where disk and Secret disagree.

  $ certguard watch --vcluster-name=my-vc --restart-window "Sat 02:00-04:00"
      In the same pod: serve x509 metrics on :9793, record Events, and delete the pod in the
      window once a k0s leaf expires within 30 days, so that the init container renews it.

  $ certguard fleet
      Every vcluster's certificates from the host cluster (needs list on secrets), most urgent
      first; exit 4 when any is due, expired or unreadable.

  $ certguard fleet serve --restart-window "Sat 02:00-04:00"
      Follow every vcluster certificate Secret (needs list and watch on secrets) and serve
      x509_cert_* and certguard_vcluster_* metrics on :9793, and the restart plan on /plan.

  $ certguard fleet plan --restart-window "Sat 02:00-04:00" --max-concurrent 2
      When each vcluster's k0s leaves fall due (expiry - --renew-before), and the first window
      opening at or after that with room for it: at most 2 vclusters an opening.

Flags (every flag can be set as CERTGUARD_<NAME>, e.g. CERTGUARD_RENEW_BEFORE=90d; a flag wins):
%s
Exit codes:
  0  nothing due, or repaired, or nothing to do yet (first start)
  1  error: could not read or write (API, disk); what was changed is journaled and finished
     by the next run
  2  usage: a flag or environment value is wrong
  3  refused: a repair is needed but unsafe (clock skew, a dead CA under --strategy leaves,
     a full reset without a clock reference) and the start fails anyway; nothing was changed
     (otherwise the start goes on, exit 0, and the warning says what was held back)
  4  check, fleet: something is due, expired or broken, or a repair would be held back
`

// flagHelp lists every command's flags, from the commands' own flag sets.
func flagHelp() string {
	var b strings.Builder
	for _, name := range []string{"repair", "check", "watch", "fleet", "fleet serve", "fleet plan"} {
		fmt.Fprintf(&b, "  %s:\n", name)
		flagSet(name, newCommand(name)).VisitAll(func(f *flag.Flag) {
			if f.Name == "o" || f.Name == "n" {
				return
			}
			fmt.Fprintf(&b, "    --%-21s %s\n", f.Name, f.Usage)
		})
	}
	return b.String()
}
