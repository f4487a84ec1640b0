package pki

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

// Action is one kind of plan step. Every step is destructive; the executor backs up what each
// step carries before the first one runs.
type Action string

const (
	// ActionRemoveSecretKeys removes the k0s leaf keys from the Secret in one update.
	ActionRemoveSecretKeys Action = "remove-secret-keys"
	// ActionDeleteSecret deletes the Secret and waits until it is gone.
	ActionDeleteSecret Action = "delete-secret"
	// ActionRemoveFile removes a k0s leaf file whose bytes the step carries (and the backup holds).
	ActionRemoveFile Action = "remove-file"
	// ActionSetAside moves a k0s leaf entry that is not a readable regular file (symlink, FIFO,
	// directory, too large) into the backup without opening it.
	ActionSetAside Action = "set-aside"
	// ActionMovePKI moves the whole pki dir into the backup with one rename.
	ActionMovePKI Action = "move-pki"
	// ActionRestoreFile writes a file the step carries into the new pki dir (sa.key, sa.pub).
	ActionRestoreFile Action = "restore-file"
)

// Step is one thing the executor does, with everything it needs: the executor reads nothing
// else to decide what to do.
type Step struct {
	Action Action `json:"action"`
	// Path is relative to the pki dir: one of the 14 k0s leaf files (remove-file, set-aside) or
	// sa.key/sa.pub (restore-file).
	Path string   `json:"path,omitempty"`
	Keys []string `json:"keys,omitempty"`
	// Kind and Link describe a set-aside entry as it was seen.
	Kind Kind   `json:"kind,omitempty"`
	Link string `json:"link,omitempty"`
	// SHA256 is the digest of Data, which the journal keeps in the backup.
	SHA256 string `json:"sha256,omitempty"`
	// Data is the bytes read through the root when the plan was made.
	Data []byte `json:"-"`
	Why  string `json:"why,omitempty"`
}

// Decision is what the plan does as a whole.
type Decision string

const (
	DecideNothing Decision = "nothing"
	DecideLeaves  Decision = "leaves"
	DecideFull    Decision = "full"
	DecideRefuse  Decision = "refuse"
)

// Code classifies a finding. The values are a stable contract: the sidecar, main and the JSON
// output switch on them, never on the text.
type Code string

const (
	CodeFirstStart     Code = "first-start"     // no Secret and no PKI files: vcluster generates them
	CodeDiskUnreadable Code = "disk-unreadable" // the pki path is no readable directory: not judged
	CodeNoClusterCA    Code = "no-cluster-ca"   // neither ca.crt nor ca.key anywhere: vcluster generates a PKI
	CodeK0sOwnPKI      Code = "k0s-own-pki"     // CA CN kubernetes-ca: k0s renews everything itself
	CodeNothingDue     Code = "nothing-due"     //
	CodeSecretOnly     Code = "secret-only"     // no files on the volume: judged from the Secret alone
	CodeNoSecret       Code = "no-secret"       // vcluster rebuilds the Secret from the volume
	CodeLeaf           Code = "leaf"            // a k0s leaf is due, expired or unusable
	CodeCADead         Code = "ca-dead"         // a CA is expired, unusable or half missing
	CodeCADue          Code = "ca-due"          // a CA expires within --renew-before: no restart renews it
	CodeCAUnjudged     Code = "ca-unjudged"     // a CA file could not be read: never a reason to reset
	CodeCADrift        Code = "ca-drift"        // the Secret's CA copy is broken, the disk's good: no reset
	CodeCAAbsent       Code = "ca-absent"       // front-proxy-ca or etcd/ca missing: k0s makes a new one
	CodeKeptBroken     Code = "kept-broken"     // a file a leaf repair keeps is unusable
	CodeKeptDue        Code = "kept-due"        // vcluster's own leaf is due: only a full reset renews it
	CodeNotYetValid    Code = "not-yet-valid"   // a certificate from the future: clock skew
	CodeClockSkew      Code = "clock-skew"      // this node's clock is off the API server's
	CodeNoClock        Code = "no-clock"        // no clock reference: no full reset
	CodeRepairHeld     Code = "repair-held"     // a repair is called for but held back for the clock; the start goes on
	CodeStrategy       Code = "strategy"        // the strategy asked for it
	CodeSAKept         Code = "sa-kept"         // a full reset keeps sa.key/sa.pub
	CodeSANotKept      Code = "sa-not-kept"     // a full reset cannot keep them
	CodeLeavesRepair   Code = "leaves-repair"   //
	CodeFullReset      Code = "full-reset"      //
)

// Finding is one thing a plan found, as a code for programs and a sentence for people.
type Finding struct {
	Code Code   `json:"code"`
	Path string `json:"path,omitempty"`
	// Secret names the Secret a finding is about (no-secret: the one looked for), so that a
	// typo in --vcluster-name or --secret-name shows in the JSON, not only in the text.
	Secret *SecretRef `json:"secret,omitempty"`
	Text   string     `json:"text"`
}

func (f Finding) String() string { return f.Text }

// SecretRef names the Secret a plan was made against, as it was read.
type SecretRef struct {
	Namespace       string `json:"namespace"`
	Name            string `json:"name"`
	UID             string `json:"uid,omitempty"` // empty: the Secret did not exist
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// Ref is namespace/name.
func (r SecretRef) Ref() string { return r.Namespace + "/" + r.Name }

// journalVersion is the format of plan.json; a journal of another version is not executed.
const journalVersion = 2

// Plan is a repair as data, and the contract the executor runs: exactly its steps, nothing else.
// An empty plan is valid.
type Plan struct {
	Version  int       `json:"version"`
	Now      time.Time `json:"now"`
	PKIDir   string    `json:"pkiDir"`
	Secret   SecretRef `json:"secret"`
	Strategy Strategy  `json:"strategy"`
	Decision Decision  `json:"decision"`
	Why      []Finding `json:"why"`
	Warnings []Finding `json:"warnings,omitempty"`
	// Refusal is said when a repair is needed but certguard will not act.
	Refusal *Finding `json:"refusal,omitempty"`
	// Breaks says what a full reset breaks for clients.
	Breaks string `json:"breaks,omitempty"`
	Steps  []Step `json:"steps"`
}

// Policy is what BuildPlan needs besides the Report. Paths come from the Report's stores.
type Policy struct {
	Strategy Strategy
	// Secret names the Secret (namespace and name; UID and resourceVersion come from the read).
	// A repair sets it from its Executor's, so that one run names one Secret.
	Secret SecretRef
	// ClockSkew is the local clock minus the API server's; ClockKnown says whether the server
	// told its time. A full reset needs a known skew within MaxClockSkew (> 0).
	ClockSkew    time.Duration
	ClockKnown   bool
	MaxClockSkew time.Duration
}

// fullResetBreaks is said in every full plan, because it is the price of the reset.
const fullResetBreaks = "a new CA is generated on boot: every existing kubeconfig and client certificate of this virtual " +
	"cluster stops working, and clients must trust the new CA"

// buildPlan decides what to do about a Report. It reads nothing and writes nothing: the steps
// carry the bytes the Report's stores read. BuildPlan (kubeconfig_server.go) wraps it.
func buildPlan(r *Report, pol Policy) Plan {
	p := Plan{Version: journalVersion, Now: r.Now, PKIDir: r.PKIDir, Secret: pol.Secret, Strategy: pol.Strategy, Decision: DecideNothing}
	if r.secret.Present {
		p.Secret.UID, p.Secret.ResourceVersion = r.secret.UID, r.secret.ResourceVersion
	}
	say := func(list *[]Finding, c Code, path, format string, a ...any) {
		*list = append(*list, Finding{Code: c, Path: path, Text: fmt.Sprintf(format, a...)})
	}
	if !r.SecretPresent && r.DiskEmpty() {
		say(&p.Why, CodeFirstStart, "", "no Secret and no PKI on the volume (first start): vcluster generates them")
		return p
	}
	if _, crt := r.File("ca.crt"); !crt {
		if _, key := r.File("ca.key"); !key {
			say(&p.Why, CodeNoClusterCA, "", "neither ca.crt nor ca.key exists on the volume or in the Secret: vcluster generates a new PKI at this start")
			return p
		}
	}
	if ca, ok := r.File("ca.crt"); ok && ca.Cert != nil && ca.Cert.SubjectCN == k0sOwnCACN {
		say(&p.Why, CodeK0sOwnPKI, "", "ca.crt has CN %s: k0s runs its own PKI and re-issues its leaves at every start (vcluster < v0.19); nothing to do", k0sOwnCACN)
		return p
	}
	if r.SecretPresent && r.DiskEmpty() {
		say(&p.Warnings, CodeSecretOnly, "", "the pki dir holds no files (a new or non-persistent volume): judged from Secret %s alone, which vcluster writes to the volume at this start", pol.Secret.Ref())
	}

	var leaf, caDead, caDue, kept, skew []Finding
	for _, f := range r.Files {
		if f.Role == RoleUnknown {
			continue
		}
		if r.RenewedByK0s(f) {
			// k0s ≥ v1.35.1 writes it anew at this start, whatever it holds (pki/k0s.go).
			continue
		}
		if f.Status == StatusNotYetValid {
			say(&skew, CodeNotYetValid, f.Path, "%s is not valid before %s", f.Path, f.Cert.NotBefore.UTC().Format(time.RFC3339))
		}
		switch {
		case slices.Contains(K0sLeafFiles, f.Path):
			if f.Status != StatusOK {
				say(&leaf, CodeLeaf, f.Path, "%s", describe(f, r.Now))
			}
		case f.Role == RoleCA:
			switch {
			case f.Status == StatusDue:
				say(&caDue, CodeCADue, f.Path, "%s: a CA is not renewed by any restart; plan a CA rotation (--strategy full) before it expires", describe(f, r.Now))
			case f.Status == StatusCorrupt && (f.Reason == ReasonNotRegular || f.Reason == ReasonTooLarge || f.Reason == ReasonUnreadable):
				// Bytes that could not be read are no evidence that the CA is bad.
				say(&p.Warnings, CodeCAUnjudged, f.Path, "%s: a CA file that cannot be read is never a reason to reset; fix it by hand", describe(f, r.Now))
			case f.Status != StatusOK && f.Source == SourceSecret && caGoodOnDisk(r, f.Path):
				// The Secret's copy is broken but the volume holds a good CA: that is drift to
				// fix, never a reason to throw the good CA away.
				say(&p.Warnings, CodeCADrift, f.Path, "%s in Secret %s, while the pki dir holds a good CA: never a reason to reset; "+
					"restore the Secret's %s from the pki dir (or a backup)", describe(f, r.Now), pol.Secret.Ref(), SecretKey(f.Path))
			case f.Status != StatusOK:
				say(&caDead, CodeCADead, f.Path, "%s", describe(f, r.Now))
			}
		case f.Role == RoleVclusterLeaf || f.Role == RoleKeyPair:
			switch f.Status {
			case StatusOK:
			case StatusDue:
				say(&p.Warnings, CodeKeptDue, f.Path, "%s: k0s does not renew vcluster's own leaves; only --strategy full does", describe(f, r.Now))
			default:
				say(&kept, CodeKeptBroken, f.Path, "%s", describe(f, r.Now))
			}
		}
	}
	for _, name := range caEntries[1:] {
		_, crt := r.File(name + ".crt")
		_, key := r.File(name + ".key")
		if !crt && !key {
			say(&p.Warnings, CodeCAAbsent, name+".crt", "%s.crt and %s.key are both missing: k0s generates a new %s on boot", name, name, name)
		}
	}
	p.Warnings = append(p.Warnings, caDue...)

	// basis is what the repair rests on: the files whose state calls for it.
	var basis []Finding
	switch {
	case len(caDead) > 0 && pol.Strategy == StrategyLeaves:
		p.Decision = DecideRefuse
		p.Why = caDead
		p.Refusal = &Finding{Code: CodeCADead, Path: caDead[0].Path, Text: "a CA is expired or unusable (" + caDead[0].Text +
			"): new leaves under it cannot make the cluster boot; rerun with --strategy auto or full to reset the PKI (existing kubeconfigs stop working)"}
		return p
	case len(caDead) > 0:
		p.Decision = DecideFull
		basis = caDead
		p.Why = append(slices.Clone(caDead), Finding{Code: CodeFullReset, Text: "a CA is expired or unusable, so the cluster cannot boot on this PKI: reset it"})
	case pol.Strategy == StrategyFull && (len(leaf) > 0 || len(caDue) > 0 || len(kept) > 0):
		p.Decision = DecideFull
		basis = append(append(slices.Clone(caDue), kept...), leaf...)
		p.Why = append(slices.Clone(basis), Finding{Code: CodeStrategy, Text: "--strategy full: reset the whole PKI"})
	case len(leaf) > 0:
		p.Decision = DecideLeaves
		basis = leaf
		p.Why = append(slices.Clone(leaf), Finding{Code: CodeLeavesRepair, Text: "the CAs are good: remove the 14 k0s leaf files so that k0s re-signs them with the same CA on boot"})
		// A broken kept file is not fixed by a leaf repair, but not made worse either: the
		// repair goes ahead and the file is reported, so that the start is never blocked by it.
		for _, k := range kept {
			k.Text += ": a leaf repair does not fix it; restore it from a backup under the backup dir, or use --strategy full"
			p.Warnings = append(p.Warnings, k)
		}
	default:
		say(&p.Why, CodeNothingDue, "", "nothing is due")
		p.Why = append(p.Why, r.k0sFindings(pol.Secret)...)
		p.Warnings = append(p.Warnings, kept...)
		return p
	}
	if hold := clockHold(r, pol, p.Decision, skew); hold != nil {
		// Acting is unsafe while the clock is in doubt. Refusing (exit 3) blocks the start, which
		// helps only where the start fails anyway: something the repair rests on is expired by
		// this node's clock and by the API server's, or broken whatever the clock. A leaf that is
		// only due, or a certificate from the future, does not stop k0s: the start goes on
		// unchanged, and the plan says loudly what was held back and why.
		// The k0s leaves count whatever the repair rests on: expired, they stop the start too.
		if fatal, ok := failsAnyway(r, pol, append(slices.Clone(basis), leaf...)); ok {
			p.Decision = DecideRefuse
			hold.Text += "; " + fatal.Text + ", so this start fails anyway"
			if hold.Code == CodeNotYetValid {
				hold.Code = CodeClockSkew // a refusal's code, as it always was
			}
			p.Refusal = hold
			return p
		}
		held := p.Decision
		p.Decision = DecideNothing
		p.Why = append(slices.Clone(basis), Finding{Code: CodeRepairHeld, Path: hold.Path, Text: fmt.Sprintf("a %s repair is called for but held back: %s; "+
			"nothing it rests on is expired by both this node's and the API server's clock, so nothing was changed and the start goes on", held, hold.Text)})
		p.Warnings = append(p.Warnings, *hold)
		return p
	}
	if !r.SecretPresent {
		ref := pol.Secret
		p.Warnings = append(p.Warnings, Finding{Code: CodeNoSecret, Secret: &ref, Text: fmt.Sprintf("Secret %s does not exist: vcluster rebuilds it from the disk "+
			"at this start, from every file left in the pki dir (if the vcluster keeps its certificates under another name, set --vcluster-name or --secret-name)", ref.Ref())})
	}
	if p.Decision == DecideFull {
		p.Breaks = fullResetBreaks
		p.Steps = fullSteps(r, &p)
	} else {
		p.Steps = leafSteps(r)
	}
	return p
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

// caGoodOnDisk reports whether the CA that p belongs to is whole and valid in the pki dir alone.
func caGoodOnDisk(r *Report, p string) bool {
	if !r.disk.Present {
		return false
	}
	e, _ := roleOf(p)
	disk := Inspect(r.disk, Store{Source: SourceSecret}, r.Now, r.RenewBefore)
	for _, ext := range e.files {
		f, ok := disk.File(e.name + ext)
		if !ok || (f.Status != StatusOK && f.Status != StatusDue) {
			return false
		}
	}
	return true
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
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
		return f.Path + " is missing (" + f.Detail + ")"
	}
	return f.Path + " is " + string(f.Status) + ": " + f.Detail
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
func (p Plan) HasDestructive() bool { return len(p.Steps) > 0 }

// Has reports whether the plan found something of code c (in Why or Warnings).
func (p Plan) Has(c Code) (Finding, bool) {
	for _, f := range append(slices.Clone(p.Why), p.Warnings...) {
		if f.Code == c {
			return f, true
		}
	}
	return Finding{}, false
}
