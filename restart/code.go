package restart

// Code says why the fleet will not restart a vcluster, or what became of its last restart. Codes
// are a contract: /plan, `fleet plan -o json`, the certguard_vcluster_restart_blocker metric's
// code label and the restart-verdict annotation carry them.
type Code string

// Blockers read from the StatefulSet and the init container's settings: a restart would not
// renew the leaves, or would do something else than a leaf repair.
const (
	NoStatefulSet    Code = "not-found"         // no StatefulSet named after the release or labelled with it
	ScaledToZero     Code = "scaled-to-zero"    // nothing runs: nothing to restart
	MultiReplica     Code = "multi-replica"     // only single-replica k0s vclusters are restarted
	K0sRenews        Code = "k0s-renews"        // k0s ≥ v1.35.1 renews its leaves itself
	NoInitContainer  Code = "no-init-container" // nothing would renew the leaves at the start
	SettingsUnknown  Code = "settings-unknown"  // envFrom, valueFrom, $(VAR) or a flag the binary refuses
	StrategyFull     Code = "strategy-full"     // the init container would reset the whole PKI
	DryRun           Code = "dry-run"           // the init container changes nothing
	OtherSecret      Code = "other-secret"      // it judges another Secret than the one the fleet judged
	OtherPKIDir      Code = "other-pki-dir"     // it judges another directory than k0s's /data/k0s/pki
	RenewNowInvalid  Code = "renew-now-invalid" // the renew-now annotation is no RFC 3339 time
	PodNotStarted    Code = "pod-not-started"   // the pod is Pending: its init container runs when it starts, no restart needed
	WouldRefuse      Code = "would-refuse"      // the init container's plan on the Secret is no leaf repair
	RenewedNothing   Code = "renewed-nothing"   // the last restart came back with the leaves still due
	Stalled          Code = "stalled"           // the last restart's pod was not Ready within --restart-ready-timeout
	Renewed          Code = "renewed"           // the last restart came back with fresh leaves (not a blocker)
	NotRestarted     Code = "not-restarted"     // the delete after the record failed: the pod was not restarted
	SecretUnreadable Code = "secret-unreadable" // the Secret could not be read fresh before the restart
)

// Persistent reports whether a verdict with this code blocks the vcluster until the Secret's data
// changes (or, for RenewedNothing, an operator asks for a renewal now).
func (c Code) Persistent() bool { return c == WouldRefuse || c == RenewedNothing }
