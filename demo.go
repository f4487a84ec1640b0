package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

// demoCmd is `certguard demo`: a vcluster v0.25 PKI whose k0s leaves expired 35 days ago, with
// its Secret held in memory, put through check → repair → check, with no cluster.
type demoCmd struct {
	Logging
	Dir string `env:"DEMO_DIR"`
}

func (c *demoCmd) flags(fs *flag.FlagSet) {
	strFlag(fs, &c.Dir, "dir", "directory for the demo PKI (default: a new temp dir)")
}

func (c *demoCmd) validate() error { return c.Logging.validate() }

func (c *demoCmd) run(ctx context.Context, o streams) int {
	stdout, stderr, log := o.stdout, o.stderr, o.log
	dir := c.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "certguard-demo-"); err != nil {
			return fail(stderr, err)
		}
	}
	now := time.Now()
	p, err := pkigen.Generate(pkigen.Options{Now: now, K0sIssued: now.Add(-400 * 24 * time.Hour)})
	if err != nil {
		return fail(stderr, err)
	}
	pkiDir := filepath.Join(dir, "pki")
	if err := pkigen.WriteDir(pkiDir, p.Files); err != nil {
		return fail(stderr, err)
	}
	secret := pkigen.NewMemorySecret("demo", "my-vc-certs", p.SecretData())
	fmt.Fprintf(stdout, "A vcluster v0.25 + k0s PKI in %s whose k0s leaves expired 35 days ago.\n", pkiDir)
	fmt.Fprintf(stdout, "The Secret demo/my-vc-certs is simulated in memory (%d keys).\n\n== certguard check (before)\n", len(p.SecretData()))
	show := func() {
		disk, err := pki.ReadDir(pkiDir)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return
		}
		s, _ := secret.Get(ctx)
		_ = writeTable(stdout, pki.Inspect(disk, pki.FromSecret(s), time.Now(), 120*24*time.Hour))
	}
	show()
	fmt.Fprintf(stdout, "\n== certguard repair\n")
	paths, err := pki.ResolvePaths(pkiDir, "")
	if err != nil {
		return fail(stderr, err)
	}
	ref := pki.SecretRef{Namespace: "demo", Name: "my-vc-certs"}
	r := &pki.Repair{RenewBefore: 120 * 24 * time.Hour, Log: log, Now: time.Now,
		Policy: pki.Policy{Strategy: pki.StrategyAuto, MaxClockSkew: 5 * time.Minute},
		Exec:   &pki.Executor{Paths: paths, Secret: ref, Keep: 5, Secrets: secret, Log: log}}
	out, err := r.Run(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	writePlan(stdout, out.Plan)
	s, _ := secret.Get(ctx)
	fmt.Fprintf(stdout, "\nbackup: %s\nSecret now has %d keys; the pki dir no longer has the 14 k0s leaf files.\n", out.Backup, len(s.Data))
	fmt.Fprintf(stdout, "\n== certguard check (after): on the next boot k0s re-signs the missing leaves with the same CA\n")
	show()
	fmt.Fprintf(stdout, "\n== certguard repair (again): a second run is a no-op\n")
	out, err = r.Run(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	writePlan(stdout, out.Plan)
	return exitOK
}
