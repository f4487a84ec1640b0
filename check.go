package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/certguard/certguard/pki"
)

// checkCmd is `certguard check`: every certificate, disk against Secret, judged as repair would.
type checkCmd struct {
	InPod
	OutputFormat
	NoSecret bool `env:"NO_SECRET"`
}

func (c *checkCmd) flags(fs *flag.FlagSet) {
	c.InPod.flags(fs)
	c.OutputFormat.flags(fs)
	fs.BoolVar(&c.NoSecret, "no-secret", c.NoSecret, "read the pki dir only, no cluster")
}

func (c *checkCmd) validate() error { return firstError(c.InPod.validate, c.OutputFormat.validate) }

func (c *checkCmd) run(ctx context.Context, o streams) int {
	stdout, stderr, log := o.stdout, o.stderr, o.log
	disk, err := pki.ReadDir(c.PKIDir)
	if err != nil {
		return fail(stderr, err)
	}
	if c.NoSecret && !disk.Present {
		// Nothing at all to judge: most likely a wrong --pki-dir, which an empty table would hide.
		return fail(stderr, fmt.Errorf("pki dir %s does not exist, and --no-secret reads nothing else: nothing to check", c.PKIDir))
	}
	sec := pki.FromSecret(nil)
	// The clock is judged as repair judges it: against the API server's, when there is one.
	pol := pki.Policy{Strategy: pki.StrategyAuto, MaxClockSkew: time.Duration(c.MaxClockSkew)}
	var t *target
	if !c.NoSecret {
		if t, err = resolve(ctx, &c.InPod); err != nil {
			return fail(stderr, err)
		}
		store := t.secretStore(c.APITimeout)
		s, err := store.Get(ctx)
		if err != nil {
			return fail(stderr, err)
		}
		if s == nil {
			log.Warn("Secret not found: showing the disk only", "secret", t.namespace+"/"+t.secret)
		}
		sec = pki.FromSecret(s)
		pol.Secret = t.ref()
		if st := store.ServerTime(); !st.IsZero() {
			pol.ClockSkew, pol.ClockKnown = time.Since(st), true
		}
	}
	r := pki.Inspect(disk, sec, time.Now(), time.Duration(c.RenewBefore))
	if r.K0sMatters() {
		r.SetK0s(k0sSource(c.k0s, t, log)(ctx))
	}
	if c.Output == "json" {
		_ = writeJSON(stdout, pki.Expiration(r))
	} else {
		_ = writeTable(stdout, r)
	}
	if !disk.Present {
		log.Info("no pki dir", "pki_dir", c.PKIDir)
	}
	// check and repair agree by construction: findings are what repair's plan (auto) would act on
	// or warn about, not every row that is not ok (k0s rewrites admin.conf and scheduler.conf and
	// re-issues its etcd leaves at every start, whatever they held: the table says so).
	p := pki.BuildPlan(r, pol)
	if p.Decision != pki.DecideNothing {
		return exitDue
	}
	for _, code := range []pki.Code{pki.CodeCADue, pki.CodeCAUnjudged, pki.CodeCADrift, pki.CodeKeptBroken, pki.CodeKeptDue, pki.CodeRepairHeld} {
		if _, ok := p.Has(code); ok {
			return exitDue
		}
	}
	return exitOK
}
