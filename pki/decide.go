package pki

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// decide makes the plan from the findings: the Decision, what it rests on, and the Steps. It
// reads nothing and writes nothing: the steps carry the bytes the Report's stores read.
func decide(r *Report, pol Policy, f findings, p *Plan) {
	if f.settled != nil {
		p.Why = []Finding{*f.settled}
		return
	}
	p.Warnings = f.warnings
	basis, act := choose(r, pol, f, p)
	if !act {
		return
	}
	if holdForClock(r, pol, f, basis, p) {
		return
	}
	if !r.SecretPresent {
		ref := pol.Secret
		p.Warnings = append(p.Warnings, Finding{Code: CodeNoSecret, Secret: &ref, Text: fmt.Sprintf("Secret %s does not exist: vcluster rebuilds it from the disk "+
			"at this start, from every file left in the pki dir (if the vcluster keeps its certificates under another name, set --vcluster-name or --secret-name)", ref.Ref())})
	}
	if p.Decision == DecideFull {
		p.Breaks = fullResetBreaks
		p.Steps = fullSteps(r, p)
	} else {
		p.Steps = leafSteps(r)
	}
}

// choose sets the Decision and says why. It returns the basis, the findings whose files call
// for the repair, and whether anything is to be done (false: nothing due, or refused).
func choose(r *Report, pol Policy, f findings, p *Plan) (basis []Finding, act bool) {
	switch {
	case len(f.caDead) > 0 && pol.Strategy == StrategyLeaves:
		p.Decision = DecideRefuse
		p.Why = f.caDead
		p.Refusal = &Finding{Code: CodeCADead, Path: f.caDead[0].Path, Text: "a CA is expired or unusable (" + f.caDead[0].Text +
			"): new leaves under it cannot make the cluster boot; rerun with --strategy auto or full to reset the PKI (existing kubeconfigs stop working)"}
		return nil, false
	case len(f.caDead) > 0:
		p.Decision = DecideFull
		basis = f.caDead
		p.Why = append(slices.Clone(f.caDead), Finding{Code: CodeFullReset, Text: "a CA is expired or unusable, so the cluster cannot boot on this PKI: reset it"})
	case pol.Strategy == StrategyFull && (len(f.leaf) > 0 || len(f.caDue) > 0 || len(f.kept) > 0):
		p.Decision = DecideFull
		basis = append(append(slices.Clone(f.caDue), f.kept...), f.leaf...)
		p.Why = append(slices.Clone(basis), Finding{Code: CodeStrategy, Text: "--strategy full: reset the whole PKI"})
	case len(f.leaf) > 0:
		p.Decision = DecideLeaves
		basis = f.leaf
		p.Why = append(slices.Clone(f.leaf), Finding{Code: CodeLeavesRepair, Text: "the CAs are good: remove the 14 k0s leaf files so that k0s re-signs them with the same CA on boot"})
		// A broken kept file is not fixed by a leaf repair, but not made worse either: the
		// repair goes ahead and the file is reported, so that the start is never blocked by it.
		for _, k := range f.kept {
			k.Text += ": a leaf repair does not fix it; restore it from a backup under the backup dir, or use --strategy full"
			p.Warnings = append(p.Warnings, k)
		}
	default:
		say(&p.Why, CodeNothingDue, "", "nothing is due")
		p.Why = append(p.Why, r.k0sFindings(pol.Secret)...)
		p.Warnings = append(p.Warnings, f.kept...)
		return nil, false
	}
	return basis, true
}

// holdForClock refuses or holds back the decided repair when the clock is in doubt, and reports
// whether it did.
func holdForClock(r *Report, pol Policy, f findings, basis []Finding, p *Plan) bool {
	hold := clockHold(r, pol, p.Decision, f.skew)
	if hold == nil {
		return false
	}
	// Acting is unsafe while the clock is in doubt. Refusing (exit 3) blocks the start, which
	// helps only where the start fails anyway: something the repair rests on is expired by
	// this node's clock and by the API server's, or broken whatever the clock. A leaf that is
	// only due, or a certificate from the future, does not stop k0s: the start goes on
	// unchanged, and the plan says loudly what was held back and why.
	// The k0s leaves count whatever the repair rests on: expired, they stop the start too.
	if fatal, ok := failsAnyway(r, pol, append(slices.Clone(basis), f.leaf...)); ok {
		p.Decision = DecideRefuse
		hold.Text += "; " + fatal.Text + ", so this start fails anyway"
		if hold.Code == CodeNotYetValid {
			hold.Code = CodeClockSkew // a refusal's code, as it always was
		}
		p.Refusal = hold
		return true
	}
	held := p.Decision
	p.Decision = DecideNothing
	p.Why = append(slices.Clone(basis), Finding{Code: CodeRepairHeld, Path: hold.Path, Text: fmt.Sprintf("a %s repair is called for but held back: %s; "+
		"nothing it rests on is expired by both this node's and the API server's clock, so nothing was changed and the start goes on", held, hold.Text)})
	p.Warnings = append(p.Warnings, *hold)
	return true
}

// clockHold says why the clock makes a decided repair unsafe, or nil: a certificate from the
// future (a clock behind), this node's clock off the API server's by more than MaxClockSkew, or
// a full reset with no clock reference at all.
func clockHold(r *Report, pol Policy, d Decision, skew []Finding) *Finding {
	switch {
	case len(skew) > 0:
		return &Finding{Code: CodeNotYetValid, Path: skew[0].Path, Text: "clock skew: " + skew[0].Text + ", but the clock says " + r.Now.UTC().Format(time.RFC3339) +
			"; a certificate from the future is not an expired one: fix the node's clock (NTP) and restart the pod"}
	case pol.ClockKnown && pol.MaxClockSkew > 0 && abs(pol.ClockSkew) > pol.MaxClockSkew:
		return &Finding{Code: CodeClockSkew, Text: fmt.Sprintf("clock skew: this node's clock is %s off the API server's (--max-clock-skew %s): "+
			"fix the node's clock (NTP) and restart the pod", abs(pol.ClockSkew).Round(time.Second), FormatDuration(pol.MaxClockSkew))}
	case d == DecideFull && (!pol.ClockKnown || pol.MaxClockSkew <= 0):
		return &Finding{Code: CodeNoClock, Text: "a full reset needs a clock reference, and the API server's time is unknown " +
			"(no Date header) or --max-clock-skew is 0: set --max-clock-skew above 0 and make sure the API answers with its Date"}
	}
	return nil
}

// failsAnyway returns the first finding of basis whose file keeps the cluster from starting
// whatever certguard does: expired by this node's clock and by the API server's (when its time
// is known), or broken in a way no clock changes (corrupt, missing, a key that does not match).
// A file that is due or not yet valid never does.
func failsAnyway(r *Report, pol Policy, basis []Finding) (Finding, bool) {
	server := r.Now
	if pol.ClockKnown {
		server = r.Now.Add(-pol.ClockSkew)
	}
	for _, b := range basis {
		i := slices.IndexFunc(r.Files, func(f File) bool { return f.Path == b.Path })
		if i < 0 {
			continue
		}
		switch f := r.Files[i]; f.Status {
		case StatusOK, StatusDue, StatusNotYetValid:
		case StatusExpired:
			if f.Cert == nil || f.Cert.NotAfter.Before(server) {
				return b, true
			}
		default:
			return b, true
		}
	}
	return Finding{}, false
}

// leafSteps removes the 14 k0s leaves from the Secret (one update) and then from the disk.
func leafSteps(r *Report) []Step {
	var s []Step
	var keys []string
	for _, p := range K0sLeafFiles {
		if r.secret.has(p) {
			keys = append(keys, SecretKey(p))
		}
	}
	if len(keys) > 0 {
		s = append(s, Step{Action: ActionRemoveSecretKeys, Keys: keys,
			Why: "vcluster writes the Secret over the disk at start: the k0s leaves must leave both, the Secret in one write"})
	}
	for _, p := range K0sLeafFiles {
		if data, ok := r.disk.Files[p]; ok {
			s = append(s, Step{Action: ActionRemoveFile, Path: p, Data: data, SHA256: digest(data), Why: "k0s re-signs it with the same CA on boot"})
			continue
		}
		var ee *EntryError
		if err, ok := r.disk.Errors[p]; ok && errors.As(err, &ee) {
			s = append(s, Step{Action: ActionSetAside, Path: p, Kind: ee.Kind, Link: ee.Link,
				Why: "not a readable regular file: moved into the backup unopened, and k0s writes a new one"})
		}
	}
	return s
}

// fullSteps deletes the Secret, moves the pki dir into the backup and puts the service-account
// key pair back, as vcluster's own rotate-ca does: vcluster (pkg/certs CreatePKIAssets →
// CreateServiceAccountKeyAndPublicKeyFiles) and k0s both reuse an existing sa.key, so tokens
// signed before the reset stay valid.
func fullSteps(r *Report, p *Plan) []Step {
	var s []Step
	if r.SecretPresent {
		s = append(s, Step{Action: ActionDeleteSecret, Why: "otherwise vcluster writes the old PKI back to the volume"})
	}
	if r.DiskPresent {
		s = append(s, Step{Action: ActionMovePKI, Why: "the whole pki dir goes into the backup; vcluster and k0s generate a new one on boot"})
	}
	key, kok := r.eff["sa.key"]
	pub, pok := r.eff["sa.pub"]
	fk, _ := r.File("sa.key")
	fp, _ := r.File("sa.pub")
	if kok && pok && fk.Status == StatusOK && fp.Status == StatusOK {
		s = append(s,
			Step{Action: ActionRestoreFile, Path: "sa.key", Data: key, SHA256: digest(key), Why: "service-account tokens stay valid"},
			Step{Action: ActionRestoreFile, Path: "sa.pub", Data: pub, SHA256: digest(pub), Why: "service-account tokens stay valid"})
		p.Warnings = append(p.Warnings, Finding{Code: CodeSAKept, Path: "sa.key", Text: "sa.key and sa.pub are kept: service-account tokens stay valid"})
	} else {
		p.Warnings = append(p.Warnings, Finding{Code: CodeSANotKept, Path: "sa.key", Text: "sa.key/sa.pub are missing or unusable: new ones are generated and every service-account token stops working"})
		p.Breaks += "; every service-account token too"
	}
	return s
}
