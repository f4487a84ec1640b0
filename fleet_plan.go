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

// fleetPlanCmd is `certguard fleet plan`: when each vcluster's k0s leaves fall due, and the
// window opening a restart is booked on, from one paginated LIST.
type fleetPlanCmd struct {
	FleetList
	Booking
	// Restarting is read from the environment only (no flags): fleet serve's settings, so that the
	// plan printed here is the one the service makes.
	Restarting
}

func (c *fleetPlanCmd) flags(fs *flag.FlagSet) {
	c.FleetList.flags(fs)
	c.Booking.flags(fs)
}

func (c *fleetPlanCmd) validate() error {
	return firstError(c.HostScope.validate, c.OutputFormat.validate, c.Booking.validate, c.Listing.validate)
}

func (c *fleetPlanCmd) run(ctx context.Context, o streams) int {
	stdout, stderr := o.stdout, o.stderr
	client, err := c.client()
	if err != nil {
		return fail(stderr, err)
	}
	now := time.Now()
	state := fleetsvc.NewState()
	if _, err := kube.EachCertSecret(ctx, client, c.Namespace, c.PageSize, func(s *pki.Secret) {
		if e := fleetsvc.Parse(s); e != nil {
			state.Set(s.Namespace+"/"+s.Name, e)
		}
	}); err != nil {
		return fail(stderr, err)
	}
	// The StatefulSets say which vclusters a restart would renew, as fleet serve judges them.
	// Without list on statefulsets (the operators' ClusterRole of v0.1 had none) the plan is
	// still made, from the Secrets alone, and says so.
	var workloads *fleetsvc.Workloads
	wl := fleetsvc.NewWorkloads()
	if err := kube.EachStatefulSet(ctx, client, c.Namespace, c.PageSize, func(s *kube.StatefulSet) { wl.Set(s.Namespace+"/"+s.Name, s) }); err != nil {
		fmt.Fprintf(stderr, "certguard: note: every vcluster booked as if it ran certguard's init container: %v\n", err)
	} else {
		workloads = wl
	}
	set := c.Booking.plan(c.RenewBefore, c.Restarting)
	p := fleetsvc.BuildPlan(state.Vclusters(now, set.RenewBefore, workloads, parseInitContainer), now, set, nil)
	if c.Output == "json" {
		_ = writeJSON(stdout, p)
	} else {
		_ = fleetsvc.WritePlan(stdout, p, c.loc)
	}
	return exitOK
}
