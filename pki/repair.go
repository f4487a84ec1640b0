package pki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Repair is one run of `certguard repair`: finish what a killed run left, read both stores,
// plan, and apply unless it is a dry run.
type Repair struct {
	RenewBefore time.Duration
	Policy      Policy
	DryRun      bool
	Exec        *Executor
	Log         *slog.Logger
	// Now is the clock; every decision of one run uses the instant read at its start.
	Now func() time.Time
	// K0s tells which k0s starts on this PKI (nil: unknown). It is asked at most once a run, and
	// only when the answer could change the plan (Report.K0sMatters).
	K0s func(context.Context) K0s

	k0s *K0s // the answer of K0s, once asked
}

// Outcome is what a run found and did.
type Outcome struct {
	Report   *Report  `json:"report"`
	Plan     Plan     `json:"plan"`
	Backup   string   `json:"backup,omitempty"`
	Resumed  []string `json:"resumed,omitempty"`
	Attempts int      `json:"attempts"`
	Applied  bool     `json:"applied"`
}

// maxAttempts bounds re-planning when the Secret keeps changing under us; each failed attempt
// removes its backup, so a Secret rewritten without end leaves nothing behind.
const maxAttempts = 3

// RenewNowBefore judges every k0s leaf due: k0s issues them for 8760 h, so none has more left.
const RenewNowBefore = 8761 * time.Hour

// Run does the repair. A Refused plan is not an error here: the caller decides the exit code.
func (r *Repair) Run(ctx context.Context) (*Outcome, error) {
	out := &Outcome{}
	journals := r.Exec.Unfinished(r.DryRun)
	for out.Attempts = 1; ; out.Attempts++ {
		// The GET mostly waits on the network: read the disk meanwhile.
		type got struct {
			sec *Secret
			err error
		}
		ch := make(chan got, 1)
		go func() {
			sec, err := r.Exec.Secrets.Get(ctx)
			ch <- got{sec, err}
		}()
		disk, diskErr := ReadDir(r.Exec.Paths.PKIDir)
		g := <-ch
		if g.err != nil {
			return out, fmt.Errorf("get Secret %s: %w", r.Exec.Secret.Ref(), g.err)
		}
		sec := g.sec
		now := r.Now()
		pol := r.Policy
		pol.Secret = r.Exec.Secret // one Secret per run: the one the executor changes
		if t := r.Exec.Secrets.ServerTime(); !t.IsZero() {
			pol.ClockSkew, pol.ClockKnown = now.Sub(t), true
		}
		renewBefore := r.RenewBefore
		if sec != nil && RenewNowRequested(sec.Annotations) {
			// An operator asked for a renewal (certguard.dev/renew-now) after the last repair:
			// every k0s leaf is due. The repair this makes writes a newer last-repair, which
			// voids the request: the next start judges as usual.
			renewBefore = max(renewBefore, RenewNowBefore)
		}
		out.Report = Inspect(disk, FromSecret(sec), now, renewBefore)
		r.setK0s(ctx, out.Report)
		if diskErr != nil {
			// The pki path is there but is no readable directory: nothing on it can be judged,
			// and nothing certguard could do would make it one. The start goes on (k0s says what
			// is wrong with it); blocking it would not help.
			out.Plan = Plan{Version: journalVersion, Now: now, PKIDir: r.Exec.Paths.PKIDir, Secret: r.Exec.Secret,
				Strategy: r.Policy.Strategy, Decision: DecideNothing,
				Why: []Finding{{Code: CodeDiskUnreadable, Text: diskErr.Error() + ": cannot judge the PKI, nothing changed"}}}
			return out, nil
		}
		out.Plan = BuildPlan(out.Report, pol)
		if len(journals) > 0 {
			// A journal finishes what a killed run began, but it may change things only where the
			// state as it is now calls for the same repair: an edited or stale journal can never
			// reset or remove what a fresh plan would keep. Restoring sa.* is always allowed.
			for _, j := range journals {
				allow := j.Plan.Decision == out.Plan.Decision
				if r.DryRun {
					r.Log.Info("would finish an unfinished repair first", "dir", j.Dir, "changes_allowed", allow, "dry_run", true)
					continue
				}
				r.Log.Info("finishing an unfinished repair", "dir", j.Dir, "decision", j.Plan.Decision, "changes_allowed", allow)
				if err := r.Exec.Resume(ctx, j, sec, allow); err != nil {
					return out, fmt.Errorf("finish unfinished repair %s: %w", j.Dir, err)
				}
				out.Resumed = append(out.Resumed, j.Dir)
			}
			journals = nil
			if !r.DryRun {
				out.Attempts-- // read again what the journals left; that is no new attempt
				continue
			}
		}
		if r.DryRun || !out.Plan.HasDestructive() {
			return out, nil
		}
		var err error
		out.Backup, err = r.Exec.Apply(ctx, out.Plan, sec)
		if errors.Is(err, ErrSecretChanged) && out.Attempts < maxAttempts {
			r.Log.Warn("the Secret changed while planning; planning again", "attempt", out.Attempts)
			continue
		}
		if err != nil {
			return out, err
		}
		out.Applied = true
		return out, nil
	}
}
