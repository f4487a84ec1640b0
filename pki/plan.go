package pki

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
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

// buildPlan decides what to do about a Report in two pure steps: classify finds what is wrong
// (findings with codes), decide makes the Decision and the Steps from them. It reads nothing and
// writes nothing: the steps carry the bytes the Report's stores read. BuildPlan
// (kubeconfig_server.go) wraps it.
func buildPlan(r *Report, pol Policy) Plan {
	p := Plan{Version: journalVersion, Now: r.Now, PKIDir: r.PKIDir, Secret: pol.Secret, Strategy: pol.Strategy, Decision: DecideNothing}
	if r.secret.Present {
		p.Secret.UID, p.Secret.ResourceVersion = r.secret.UID, r.secret.ResourceVersion
	}
	decide(r, pol, classify(r, pol), &p)
	return p
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Residual prints a remaining time as kubeadm's check-expiration does, with apimachinery's
// duration.ShortHumanDuration (364d, 9y), except in three ranges where certguard said more
// before it used it, and still does:
//   - past NotAfter, always <invalid>: ShortHumanDuration says 0s up to 2 s past, and an expired
//     certificate has no time left;
//   - from a minute to a day, hours and minutes (1h30m), where it says 1h: a leaf due today;
//   - from 365 days to 2 years, days (500d), where it says 1y for anything up to 729 days: a
//     10-year vcluster CA in its last two years.
//
// Under a minute it now says seconds (20s); the hand-written version printed nothing there.
func Residual(d time.Duration) string {
	switch {
	case d < 0:
		return "<invalid>"
	case d >= time.Minute && d < 24*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	case d >= 365*24*time.Hour && d < 2*365*24*time.Hour:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
	return duration.ShortHumanDuration(d)
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
