package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
)

// repairCmd is `certguard repair`, the init container: check, back up, repair.
type repairCmd struct {
	InPod
	OutputFormat
	BackupDir   string `env:"BACKUP_DIR"`
	KeepBackups int    `env:"KEEP_BACKUPS" envDefault:"5"`
	Strategy    string `env:"STRATEGY" envDefault:"auto"`
	DryRun      bool   `env:"DRY_RUN"`
	strategy    pki.Strategy
}

func (c *repairCmd) flags(fs *flag.FlagSet) {
	c.InPod.flags(fs)
	c.OutputFormat.flags(fs)
	strFlag(fs, &c.BackupDir, "backup-dir", "where repairs keep their backups (default: <pki-dir>.old, beside the pki dir)")
	fs.IntVar(&c.KeepBackups, "keep-backups", c.KeepBackups, "how many completed backups to keep")
	strFlag(fs, &c.Strategy, "strategy", "auto, leaves or full (see docs/repair.md)")
	fs.BoolVar(&c.DryRun, "dry-run", c.DryRun, "print the plan, change nothing")
}

// validate is every check repair makes before it reads anything; the fleet service makes the
// same ones on an init container's spec (parseInitContainer), so that it never restarts a pod
// whose init container would refuse its settings.
func (c *repairCmd) validate() error {
	return firstError(c.InPod.validate, c.OutputFormat.validate, c.validateRepair)
}

func (c *repairCmd) validateRepair() error {
	s, err := pki.ParseStrategy(c.Strategy)
	if err != nil {
		return usageError{"--strategy: " + err.Error()}
	}
	c.strategy = s
	if c.KeepBackups < 1 {
		return usageError{"--keep-backups: must be at least 1"}
	}
	return nil
}

func (c *repairCmd) run(ctx context.Context, o streams) int {
	stdout, stderr, log := o.stdout, o.stderr, o.log
	paths, err := pki.ResolvePaths(c.PKIDir, c.BackupDir)
	if err != nil {
		return fail(stderr, usageError{err.Error()})
	}
	warnIfNotMounted(paths.PKIDir, log)
	t, err := resolve(ctx, &c.InPod)
	if err != nil {
		return fail(stderr, err)
	}
	events := t.events(log)
	r := &pki.Repair{
		RenewBefore: time.Duration(c.RenewBefore), DryRun: c.DryRun, Log: log, Now: time.Now, K0s: k0sSource(c.k0s, t, log),
		Policy: pki.Policy{Strategy: c.strategy, MaxClockSkew: time.Duration(c.MaxClockSkew)},
		Exec: &pki.Executor{Paths: paths, Secret: t.ref(), Keep: c.KeepBackups,
			Secrets: t.secretStore(c.APITimeout), Log: log, Failpoint: pki.EnvFailpoint()},
	}
	out, err := r.Run(ctx)
	if c.Output == "json" {
		_ = writeJSON(stdout, out)
	} else if out.Report != nil && (c.DryRun || out.Plan.Decision != pki.DecideNothing) {
		writePlan(stdout, out.Plan)
	}
	if err != nil {
		events.Emit(ctx, "Warning", kube.ReasonFailed, "certificate repair failed: "+err.Error())
		return fail(stderr, err)
	}
	p := out.Plan
	for _, w := range p.Warnings {
		log.Warn(w.Text, "code", w.Code)
	}
	if caDue, ok := p.Has(pki.CodeCADue); ok && !c.DryRun {
		events.Emit(ctx, "Warning", kube.ReasonCAExpiryWarning, caDue.Text)
	}
	// What certguard found broken and left alone (it never blocks a start for it) is said on the
	// pod too, where an operator looks.
	for _, code := range []pki.Code{pki.CodeKeptBroken, pki.CodeCADrift, pki.CodeCAUnjudged, pki.CodeRepairHeld} {
		if w, ok := p.Has(code); ok && !c.DryRun {
			events.Emit(ctx, "Warning", kube.ReasonNeedsAttention, w.Text)
		}
	}
	// A repair held back for the clock lets the start go on (exit 0), but must not pass unseen:
	// it is also the termination message, which `kubectl describe pod` shows for the init container.
	if held, ok := p.Has(pki.CodeRepairHeld); ok {
		writeLine(stderr, "certguard: warning: "+held.Text)
	}
	switch {
	case p.Decision == pki.DecideRefuse:
		if !c.DryRun {
			events.Emit(ctx, "Warning", kube.ReasonRefused, p.Refusal.Text)
		}
		return refuse(stderr, p.Refusal.Text+"; nothing was changed")
	case c.DryRun:
		log.Info("dry run: nothing changed", "decision", p.Decision, "steps", len(p.Steps), "dry_run", true)
	case out.Applied && p.Decision == pki.DecideNothing:
		// Only the Secret's kubeconfig servers were set for vcluster's syncer: no repair, so no
		// CertificatesRepaired Event.
		log.Info("nothing to repair; kubeconfig servers set for vcluster's syncer", "backup", out.Backup, "why", joinFindings(p.Why))
	case out.Applied:
		msg := fmt.Sprintf("repaired (%s): %s; backup in %s", p.Decision, joinFindings(p.Why), out.Backup)
		log.Info("repaired", "decision", p.Decision, "backup", out.Backup)
		events.Emit(ctx, "Normal", kube.ReasonRepaired, msg)
	default:
		log.Info("nothing to do", "why", joinFindings(p.Why), "files", len(out.Report.Files))
	}
	return exitOK
}

func joinFindings(fs []pki.Finding) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.Text
	}
	return strings.Join(s, "; ")
}

// warnIfNotMounted warns when the pki dir is on the container's root filesystem.
func warnIfNotMounted(dir string, log *slog.Logger) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	if mp := mountPoint(dir, mi); mp == "/" {
		log.Warn("the pki dir is not on a mounted volume: add volumeMounts [{name: data, mountPath: /data}] to this container, "+
			"or certguard checks a directory k0s never reads", "pki_dir", dir)
	}
}
