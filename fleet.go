package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	fleetsvc "github.com/certguard/certguard/fleet"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
)

// fleetCmd is `certguard fleet`: one row per vcluster certificate Secret, most urgent first.
type fleetCmd struct{ FleetList }

// FleetList is what the one-shot fleet commands (fleet, fleet plan) take: the scope, the page
// size of their paginated LISTs, and the output.
type FleetList struct {
	HostScope
	Listing
	OutputFormat
}

func (l *FleetList) flags(fs *flag.FlagSet) {
	l.HostScope.flags(fs)
	l.Listing.flags(fs)
	l.OutputFormat.flags(fs)
}

func (l *FleetList) validate() error {
	return firstError(l.HostScope.validate, l.OutputFormat.validate, l.Listing.validate)
}

func (c *fleetCmd) run(ctx context.Context, o streams) int {
	stdout, stderr := o.stdout, o.stderr
	client, err := c.client()
	if err != nil {
		return fail(stderr, err)
	}
	now := time.Now()
	var rows []fleetsvc.Row
	if _, err := kube.EachCertSecret(ctx, client, c.Namespace, c.PageSize, func(s *pki.Secret) {
		rows = append(rows, fleetsvc.Judge(s, now, time.Duration(c.RenewBefore)))
	}); err != nil {
		return fail(stderr, err)
	}
	fleetsvc.SortRows(rows)
	if c.Output == "json" {
		if rows == nil {
			rows = []fleetsvc.Row{}
		}
		_ = writeJSON(stdout, rows)
	} else {
		_ = fleetsvc.WriteRows(stdout, rows, now)
	}
	for _, r := range rows {
		if r.Status == fleetsvc.StatusExpired || r.Status == fleetsvc.StatusDue || r.Status == fleetsvc.StatusUnreadable {
			return exitDue
		}
	}
	return exitOK
}

// HostScope is what the fleet commands take: the host cluster and which of its namespaces.
type HostScope struct {
	Cluster
	Namespace string `env:"NAMESPACE"`
}

func (h *HostScope) flags(fs *flag.FlagSet) {
	h.Cluster.flags(fs)
	strFlag(fs, &h.Namespace, "n", "only this namespace (default: all)")
	strFlag(fs, &h.Namespace, "namespace", "only this namespace (default: all)")
}

// client is the API client of the fleet commands, which have no vcluster to resolve.
func (h *HostScope) client() (*kube.Client, error) {
	rc, err := kube.Config(h.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return kube.NewClient(rc)
}

// Listing is the page size of the one-shot fleet commands' paginated LISTs.
type Listing struct {
	PageSize int64 `env:"PAGE_SIZE" envDefault:"100"`
}

func (l *Listing) flags(fs *flag.FlagSet) {
	fs.Int64Var(&l.PageSize, "page-size", l.PageSize, "Secrets per LIST page")
}

func (l *Listing) validate() error {
	if l.PageSize < 1 {
		return usageError{"--page-size: must be at least 1"}
	}
	return nil
}

// Booking is how fleet plan and fleet serve book restarts: the window, how many an opening
// takes, and the jitter.
type Booking struct {
	Windowing
	MaxConcurrent int     `env:"MAX_CONCURRENT" envDefault:"1"`
	Jitter        float64 `env:"JITTER" envDefault:"0.1"`
}

func (b *Booking) flags(fs *flag.FlagSet) {
	b.Windowing.flags(fs, `restart window the plan books on, e.g. "Sat 02:00-04:00" (empty: none)`)
	fs.IntVar(&b.MaxConcurrent, "max-concurrent", b.MaxConcurrent, "at most this many vclusters restarted per window opening (which bounds those in flight too)")
	fs.Float64Var(&b.Jitter, "jitter", b.Jitter, "spread due times by up to this fraction of --renew-before, by each Secret's UID (0 to 0.5; 0: none)")
}

func (b *Booking) validate() error { return firstError(b.Windowing.validate, b.validateBooking) }

func (b *Booking) validateBooking() error {
	if b.MaxConcurrent < 1 {
		return usageError{fmt.Sprintf("--max-concurrent: must be at least 1 (got %d)", b.MaxConcurrent)}
	}
	// Later than due by more than half of --renew-before would leave too little of it to book in.
	if b.Jitter < 0 || b.Jitter > 0.5 || b.Jitter != b.Jitter {
		return usageError{fmt.Sprintf("--jitter: must be from 0 to 0.5 (got %v)", b.Jitter)}
	}
	return nil
}

// Restarting is how fleet serve restarts, which fleet plan books by too: fleet plan takes these
// from the environment only, as the service's defaults, so that both make the same plan.
type Restarting struct {
	RestartMinInterval  duration `env:"RESTART_MIN_INTERVAL" envDefault:"24h"`
	RestartReadyTimeout duration `env:"RESTART_READY_TIMEOUT" envDefault:"15m"`
}

func (r *Restarting) flags(fs *flag.FlagSet) {
	fs.Var(&r.RestartMinInterval, "restart-min-interval", "at most one restart of a vcluster per this interval (recorded on its Secret, shared with the sidecar)")
	fs.Var(&r.RestartReadyTimeout, "restart-ready-timeout", "a restarted pod not Ready by then stops further restarts until the window closes")
}

// plan is the fleet plan's settings.
func (b *Booking) plan(renewBefore duration, r Restarting) fleetsvc.PlanSettings {
	return fleetsvc.PlanSettings{Window: b.parsed, MaxConcurrent: b.MaxConcurrent, RenewBefore: time.Duration(renewBefore),
		MinInterval: time.Duration(r.RestartMinInterval), ReadyTimeout: time.Duration(r.RestartReadyTimeout), Jitter: b.Jitter}
}
