package main

import (
	"context"
	"flag"
	"os"
	"time"

	fleetsvc "github.com/certguard/certguard/fleet"
	"github.com/certguard/certguard/kube"
)

// fleetServeCmd is `certguard fleet serve`: it follows every vcluster certificate Secret and
// StatefulSet with informers and serves metrics and the plan until it is stopped; with
// --restart-due it also restarts the vclusters that are due, in the window. RBAC refusing list
// or watch ends it with one line naming the verb: no retry makes a missing grant appear, and a
// crash-looping pod with that line as its termination message says what to fix.
type fleetServeCmd struct {
	HostScope
	Booking
	Restarting
	Listen         string `env:"LISTEN" envDefault:":9793"`
	RestartDue     bool   `env:"RESTART_DUE"`
	DryRun         bool   `env:"DRY_RUN"`
	LeaseNamespace string `env:"LEASE_NAMESPACE"`
	LeaseName      string `env:"LEASE_NAME" envDefault:"certguard-fleet"`
	PodName        string `env:"POD_NAME"`
	ProbeServed    bool   `env:"PROBE_SERVED"`
}

func (c *fleetServeCmd) flags(fs *flag.FlagSet) {
	c.HostScope.flags(fs)
	c.Booking.flags(fs)
	c.Restarting.flags(fs)
	strFlag(fs, &c.Listen, "listen", "address for /metrics, /plan, /healthz and /readyz")
	fs.BoolVar(&c.RestartDue, "restart-due", c.RestartDue, "in --restart-window, delete the pod of vclusters whose k0s leaves are due and that run certguard's init container")
	fs.BoolVar(&c.DryRun, "dry-run", c.DryRun, "with --restart-due: log restarts instead of doing them")
	strFlag(fs, &c.LeaseNamespace, "lease-namespace", "namespace of the restart Lease (default: the service account's namespace)")
	strFlag(fs, &c.LeaseName, "lease-name", "name of the Lease that keeps two replicas from restarting at once")
	strFlag(fs, &c.PodName, "pod-name", "this replica's name in the Lease and Events (default: the hostname)")
	fs.BoolVar(&c.ProbeServed, "probe-served", c.ProbeServed, "probe each vcluster's Service (its EndpointSlices' https port) for the certificate it serves; needs list on endpointslices (docs/served.md)")
}

func (c *fleetServeCmd) validate() error {
	return firstError(c.HostScope.validate, c.Booking.validate, c.validateRestarts)
}

func (c *fleetServeCmd) validateRestarts() error {
	if !c.RestartDue {
		return nil
	}
	switch {
	case c.parsed == nil:
		return usageError{"--restart-due needs --restart-window: restarts happen only inside it"}
	case time.Duration(c.RestartMinInterval) < minRestartInterval:
		return checkMinInterval(c.RestartMinInterval)
	case c.RestartReadyTimeout <= 0:
		return usageError{"--restart-ready-timeout must be above 0"}
	}
	return nil
}

// restartTick is how often the restarter looks: well under the Lease's duration, which it
// renews each time, and short against a restart window.
const (
	restartTick   = 10 * time.Second
	leaseDuration = 60 * time.Second
)

func (c *fleetServeCmd) run(ctx context.Context, o streams) int {
	stderr, log := o.stderr, o.log
	client, err := c.client()
	if err != nil {
		return fail(stderr, err)
	}
	svc := &fleetsvc.Service{Client: client, Namespace: c.Namespace, Listen: c.Listen, RenewBefore: time.Duration(c.RenewBefore),
		Plan: c.Booking.plan(c.RenewBefore, c.Restarting), Parse: parseInitContainer, RestartDue: c.RestartDue, DryRun: c.DryRun,
		Tick: restartTick, LeaseBudget: leaseDuration / 3, ProbeServed: c.ProbeServed, Log: log, Build: exporterBuild()}
	if c.RestartDue {
		if svc.Lease, err = c.lease(client); err != nil {
			return fail(stderr, err)
		}
	}
	scope := c.Namespace
	if scope == "" {
		scope = "all namespaces"
	}
	log.Info("following vcluster certificate Secrets and StatefulSets", "namespace", scope, "restart_window", c.RestartWindow,
		"restart_due", c.RestartDue, "dry_run", c.DryRun)
	if err := svc.Run(ctx); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// lease is the restart Lease, in --lease-namespace or the service account's namespace, held as
// --pod-name or the hostname.
func (c *fleetServeCmd) lease(client *kube.Client) (*kube.Lease, error) {
	ns := c.LeaseNamespace
	if ns == "" {
		var err error
		if ns, err = podNamespace("--lease-namespace"); err != nil {
			return nil, err
		}
	}
	id := c.PodName
	if id == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, err
		}
		id = h
	}
	return &kube.Lease{Client: client, Namespace: ns, Name: c.LeaseName, Identity: id, Duration: leaseDuration}, nil
}

// parseInitContainer reads certguard's init container as the binary itself would: the repair
// command's settings (its flag set over its literal environment, CERTGUARD_*), with every check
// repair makes before it acts (repairCmd.validate). It is the fleet's only way to know what a
// restart will do.
func parseInitContainer(args []string, environ map[string]string) (fleetsvc.InitSettings, error) {
	if environ == nil {
		environ = map[string]string{} // never this process's own environment
	}
	var c repairCmd
	if err := parseSettings("repair", &c, args, environ); err != nil {
		return fleetsvc.InitSettings{}, err
	}
	return fleetsvc.InitSettings{RenewBefore: time.Duration(c.RenewBefore), Strategy: c.strategy, DryRun: c.DryRun, PKIDir: c.PKIDir,
		SecretName: c.SecretName, VclusterName: c.VclusterName, Namespace: c.Namespace}, nil
}
