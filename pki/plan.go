package pki

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Strategy is what a repair may do.
type Strategy string

const (
	// StrategyAuto repairs the leaves when the CAs are good and resets everything only when a CA
	// is expired or unusable, when the cluster cannot boot anyway.
	StrategyAuto Strategy = "auto"
	// StrategyLeaves only ever removes the 14 k0s leaf files, so k0s re-signs them with the same CA.
	StrategyLeaves Strategy = "leaves"
	// StrategyFull moves the whole pki dir aside and deletes the Secret when anything is due: a new
	// CA, new service-account keys, and every existing kubeconfig and token stops working.
	StrategyFull Strategy = "full"
)

// ParseStrategy accepts the three strategy names.
func ParseStrategy(s string) (Strategy, error) {
	switch st := Strategy(s); st {
	case StrategyAuto, StrategyLeaves, StrategyFull:
		return st, nil
	}
	return "", fmt.Errorf("must be one of auto|leaves|full (got %q)", s)
}

// Action is one kind of plan step.
type Action string

const (
	ActionBackupSecret     Action = "backup-secret"
	ActionBackupFile       Action = "backup-file"
	ActionRemoveSecretKeys Action = "remove-secret-keys"
	ActionDeleteSecret     Action = "delete-secret"
	ActionRemoveFile       Action = "remove-file"
	ActionMovePKI          Action = "move-pki"
	ActionPruneBackups     Action = "prune-backups"
)

// destructive reports whether a step changes or removes original bytes.
func (a Action) destructive() bool {
	return a == ActionRemoveSecretKeys || a == ActionDeleteSecret || a == ActionRemoveFile || a == ActionMovePKI
}

// Step is one thing the executor does. Paths are relative to the pki dir.
type Step struct {
	Action Action   `json:"action"`
	Target string   `json:"target"`
	Keys   []string `json:"keys,omitempty"`
	Why    string   `json:"why,omitempty"`
}

// Decision is what the plan does as a whole.
type Decision string

const (
	DecideNothing Decision = "nothing"
	DecideLeaves  Decision = "leaves"
	DecideFull    Decision = "full"
	DecideRefuse  Decision = "refuse"
)

// Plan is a repair as data: what will be done and why. An empty plan is valid.
type Plan struct {
	Now      time.Time `json:"now"`
	Strategy Strategy  `json:"strategy"`
	Decision Decision  `json:"decision"`
	Why      []string  `json:"why"`
	Warnings []string  `json:"warnings,omitempty"`
	// Refusal is the one line said when a repair is needed but certguard will not act.
	Refusal string `json:"refusal,omitempty"`
	// Breaks says what a full reset breaks for clients.
	Breaks string `json:"breaks,omitempty"`
	Steps  []Step `json:"steps"`
}

// Policy is what BuildPlan needs besides the Report.
type Policy struct {
	Strategy Strategy
	// Secret names the Secret in messages ("ns/name").
	Secret string
	// ClockSkew is the local clock minus the API server's (0 when unknown); beyond MaxClockSkew
	// no destructive step is taken.
	ClockSkew    time.Duration
	MaxClockSkew time.Duration
	KeepBackups  int
}

// fullResetBreaks is said in every full plan, because it is the price of the reset.
const fullResetBreaks = "a new CA and new service-account keys are generated on boot: every existing kubeconfig, " +
	"client certificate and service-account token of this virtual cluster stops working"

// BuildPlan decides what to do about a Report. It reads nothing and writes nothing.
func BuildPlan(r *Report, pol Policy) Plan {
	p := Plan{Now: r.Now, Strategy: pol.Strategy, Decision: DecideNothing}
	if r.DiskEmpty() {
		p.Why = append(p.Why, "no PKI on the volume yet (first start): nothing to check")
		if r.SecretPresent {
			p.Warnings = append(p.Warnings, fmt.Sprintf("Secret %s exists but the pki dir holds no PKI: vcluster writes the Secret to the volume at this start "+
				"and the next start checks it; if this is not a recreated volume, check that the data volume is mounted into this container", pol.Secret))
		}
		return p
	}
	if ca, ok := r.File("ca.crt"); ok && ca.Cert != nil && ca.Cert.SubjectCN == k0sOwnCACN {
		p.Why = append(p.Why, "ca.crt has CN "+k0sOwnCACN+": k0s runs its own PKI and re-issues its leaves at every start (vcluster < v0.19); nothing to do")
		return p
	}

	var leafWhy, caBroken, caDue, keptBroken, skew []string
	for _, f := range r.Files {
		if f.Role == RoleUnknown {
			continue
		}
		if f.Status == StatusNotYetValid {
			skew = append(skew, fmt.Sprintf("%s is not valid before %s", f.Path, f.Cert.NotBefore.UTC().Format(time.RFC3339)))
		}
		switch {
		case slices.Contains(K0sLeafFiles, f.Path):
			if f.Status != StatusOK {
				leafWhy = append(leafWhy, describe(f, r.Now))
			}
		case f.Role == RoleCA:
			switch f.Status {
			case StatusExpired, StatusCorrupt, StatusKeyMismatch, StatusMissing:
				caBroken = append(caBroken, describe(f, r.Now))
			case StatusDue:
				caDue = append(caDue, describe(f, r.Now))
			}
		case f.Role == RoleVclusterLeaf || f.Role == RoleKeyPair:
			switch f.Status {
			case StatusExpired, StatusCorrupt, StatusKeyMismatch, StatusUnknownIssuer, StatusMissing:
				keptBroken = append(keptBroken, describe(f, r.Now))
			case StatusDue:
				p.Warnings = append(p.Warnings, describe(f, r.Now)+": k0s does not renew vcluster's own leaves; only --strategy full does")
			}
		}
	}
	for _, name := range caEntries {
		_, crt := r.File(name + ".crt")
		_, key := r.File(name + ".key")
		if !crt && !key {
			caBroken = append(caBroken, name+".crt and "+name+".key are both missing")
		}
	}
	if abs(pol.ClockSkew) > pol.MaxClockSkew && pol.MaxClockSkew > 0 {
		skew = append(skew, fmt.Sprintf("this node's clock is %s off the API server's", abs(pol.ClockSkew).Round(time.Second)))
	}
	for _, d := range caDue {
		p.Warnings = append(p.Warnings, d+": a CA is not renewed by any restart; plan a CA rotation (--strategy full) before it expires")
	}

	switch {
	case len(caBroken) > 0 && pol.Strategy == StrategyLeaves:
		p.Decision = DecideRefuse
		p.Why = caBroken
		p.Refusal = "a CA is expired or unusable (" + caBroken[0] + "): new leaves under it cannot make the cluster boot; " +
			"rerun with --strategy auto or full to reset the PKI (existing kubeconfigs and tokens stop working)"
		return p
	case len(caBroken) > 0 || (pol.Strategy == StrategyFull && (len(leafWhy) > 0 || len(caDue) > 0 || len(keptBroken) > 0)):
		p.Decision = DecideFull
		p.Why = append(append(append(p.Why, caBroken...), caDue...), append(keptBroken, leafWhy...)...)
		if len(caBroken) > 0 {
			p.Why = append(p.Why, "a CA is expired or unusable, so the cluster cannot boot on this PKI: reset it")
		} else {
			p.Why = append(p.Why, "--strategy full: reset the whole PKI")
		}
	case len(leafWhy) > 0:
		p.Decision = DecideLeaves
		p.Why = append(leafWhy, "the CAs are good: remove the 14 k0s leaf files so that k0s re-signs them with the same CA on boot")
		if len(keptBroken) > 0 {
			p.Decision = DecideRefuse
			p.Refusal = keptBroken[0] + ": a leaf repair does not fix it (k0s keeps vcluster's leaves as they are, and would replace a " +
				"half-missing sa pair with new keys that break every service-account token); restore it from a backup under the " +
				"backup dir, or rerun with --strategy full to reset the PKI"
			return p
		}
	default:
		p.Why = append(p.Why, "nothing is due")
		if len(keptBroken) > 0 {
			p.Warnings = append(p.Warnings, keptBroken...)
		}
		return p
	}
	if len(skew) > 0 {
		p.Decision = DecideRefuse
		p.Refusal = "clock skew: " + skew[0] + ", but the clock says " + r.Now.UTC().Format(time.RFC3339) +
			"; a certificate from the future is not an expired one: fix the node's clock (NTP) and restart the pod"
		return p
	}
	if !r.SecretPresent {
		p.Warnings = append(p.Warnings, "the Secret does not exist: vcluster rebuilds it from the disk at this start, from every file left in the pki dir")
	}
	p.Steps = steps(r, p.Decision, pol)
	if p.Decision == DecideFull {
		p.Breaks = fullResetBreaks
	}
	return p
}

func steps(r *Report, d Decision, pol Policy) []Step {
	var s []Step
	if r.SecretPresent {
		s = append(s, Step{Action: ActionBackupSecret, Target: pol.Secret, Why: "keep the Secret's data as it was"})
	}
	switch d {
	case DecideLeaves:
		var onDisk, keys []string
		for _, p := range K0sLeafFiles {
			if f, ok := r.File(p); ok && f.OnDisk {
				onDisk = append(onDisk, p)
			}
			if f, ok := r.File(p); ok && f.InSecret {
				keys = append(keys, SecretKey(p))
			}
		}
		for _, p := range onDisk {
			s = append(s, Step{Action: ActionBackupFile, Target: p})
		}
		if len(keys) > 0 {
			s = append(s, Step{Action: ActionRemoveSecretKeys, Target: pol.Secret, Keys: keys,
				Why: "vcluster writes the Secret over the disk at start: the k0s leaves must leave both, in one write"})
		}
		for _, p := range onDisk {
			s = append(s, Step{Action: ActionRemoveFile, Target: p, Why: "k0s re-signs it with the same CA on boot"})
		}
	case DecideFull:
		if r.SecretPresent {
			s = append(s, Step{Action: ActionDeleteSecret, Target: pol.Secret,
				Why: "otherwise vcluster writes the old PKI back to the volume"})
		}
		s = append(s, Step{Action: ActionMovePKI, Target: ".",
			Why: "the whole pki dir goes into the backup; vcluster and k0s generate a new one on boot"})
	}
	s = append(s, Step{Action: ActionPruneBackups, Target: fmt.Sprint(pol.KeepBackups), Why: "keep the newest completed backups"})
	return s
}

// describe says in one phrase what is wrong with a file.
func describe(f File, now time.Time) string {
	switch f.Status {
	case StatusExpired:
		return fmt.Sprintf("%s expired at %s", f.Path, f.Cert.NotAfter.UTC().Format(time.RFC3339))
	case StatusDue:
		return fmt.Sprintf("%s expires within %s at %s", f.Path, Residual(f.Cert.NotAfter.Sub(now)), f.Cert.NotAfter.UTC().Format(time.RFC3339))
	case StatusNotYetValid:
		return fmt.Sprintf("%s is not valid before %s", f.Path, f.Cert.NotBefore.UTC().Format(time.RFC3339))
	case StatusMissing:
		return f.Path + " is missing (" + f.Reason + ")"
	}
	return f.Path + " is " + string(f.Status) + ": " + f.Reason
}

// Residual prints a remaining time the way kubeadm does: 364d, 9y, <invalid> once past.
func Residual(d time.Duration) string {
	switch {
	case d < 0:
		return "<invalid>"
	case d < 24*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	case d < 2*365*24*time.Hour:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
	return fmt.Sprintf("%dy", int(d/(365*24*time.Hour)))
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// HasDestructive reports whether executing the plan changes anything.
func (p Plan) HasDestructive() bool {
	return slices.ContainsFunc(p.Steps, func(s Step) bool { return s.Action.destructive() })
}
