package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/restart"
	"github.com/certguard/certguard/watch"
)

// watchCmd is `certguard watch`, the sidecar: metrics, Events, a restart before expiry.
type watchCmd struct {
	InPod
	Windowing
	BackupDir          string   `env:"BACKUP_DIR"`
	Listen             string   `env:"LISTEN" envDefault:":9793"`
	RestartBefore      duration `env:"RESTART_BEFORE" envDefault:"30d"`
	RestartMinInterval duration `env:"RESTART_MIN_INTERVAL" envDefault:"24h"`
	EventReminder      duration `env:"EVENT_REMINDER" envDefault:"6h"`
	DryRun             bool     `env:"DRY_RUN"`
	ProbeAPIServer     string   `env:"PROBE_APISERVER" envDefault:"127.0.0.1:6443"`
	ProbeSyncer        string   `env:"PROBE_SYNCER" envDefault:"127.0.0.1:8443"`
}

func (c *watchCmd) flags(fs *flag.FlagSet) {
	c.InPod.flags(fs)
	c.Windowing.flags(fs, `when restarts may happen, e.g. "Sat 02:00-04:00" (empty: never)`)
	strFlag(fs, &c.BackupDir, "backup-dir", "where repairs keep their backups (default: <pki-dir>.old, beside the pki dir)")
	strFlag(fs, &c.Listen, "listen", "address for /metrics, /healthz and /readyz")
	fs.Var(&c.RestartBefore, "restart-before", "restart the pod when a k0s leaf expires within this (must be below --renew-before)")
	fs.Var(&c.RestartMinInterval, "restart-min-interval", "at most one restart per this interval (recorded on the Secret)")
	fs.Var(&c.EventReminder, "event-reminder", "repeat a warning Event this often while a certificate stays due")
	fs.BoolVar(&c.DryRun, "dry-run", c.DryRun, "log restarts instead of doing them")
	strFlag(fs, &c.ProbeAPIServer, "probe-apiserver", "host:port of k0s's API server in the pod, whose served certificate is probed (off: not probed; docs/served.md)")
	strFlag(fs, &c.ProbeSyncer, "probe-syncer", "host:port of the syncer in the pod, whose served certificate is probed (off: not probed)")
}

func probeAddr(a string) string {
	if a == "off" {
		return ""
	}
	return a
}

func (c *watchCmd) validate() error {
	return firstError(c.InPod.validate, c.Windowing.validate, c.validateRestart, c.validateProbes)
}

func (c *watchCmd) validateProbes() error {
	for _, p := range []struct{ flag, addr string }{{"--probe-apiserver", c.ProbeAPIServer}, {"--probe-syncer", c.ProbeSyncer}} {
		if a := probeAddr(p.addr); a != "" {
			// Checked here, not at the first dial: a port that cannot be dialled would otherwise
			// read as an endpoint down (x509_source_up 0) for the pod's whole life.
			host, port, err := net.SplitHostPort(a)
			if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				return usageError{fmt.Sprintf("%s: want host:port or off (got %q)", p.flag, p.addr)}
			}
		}
	}
	return nil
}

func (c *watchCmd) validateRestart() error {
	// Checked whether or not a window is set: the window may come later from the environment,
	// and certguard_next_restart_timestamp_seconds and the logged decision use --restart-before
	// either way. A restart at or beyond --renew-before would find nothing due at the init
	// container and renew nothing.
	if c.RestartBefore >= c.RenewBefore {
		return usageError{fmt.Sprintf("--restart-before (%s) must be below --renew-before (%s), or the init container would not renew what the restart is for",
			&c.RestartBefore, &c.RenewBefore)}
	}
	if c.RestartBefore <= 0 {
		return usageError{fmt.Sprintf("--restart-before must be above 0 (got %s)", &c.RestartBefore)}
	}
	return checkMinInterval(c.RestartMinInterval)
}

func (c *watchCmd) run(ctx context.Context, o streams) int {
	stderr, log := o.stderr, o.log
	// The backup dir is resolved as the init container resolves it (one place, pki.ResolvePaths);
	// the pki dir is watched under its configured name, so that a swap under it is followed.
	paths, err := pki.ResolvePaths(c.PKIDir, c.BackupDir)
	if err != nil {
		return fail(stderr, usageError{err.Error()})
	}
	pkiDir, err := filepath.Abs(c.PKIDir)
	if err != nil {
		return fail(stderr, usageError{"--pki-dir: " + err.Error()})
	}
	t, err := resolve(ctx, &c.InPod)
	if err != nil {
		return fail(stderr, err)
	}
	s := &watch.Sidecar{
		K0s:    k0sSource(c.k0s, t, log),
		PKIDir: pkiDir, BackupDir: paths.BackupDir, RenewBefore: time.Duration(c.RenewBefore),
		Reminder: time.Duration(c.EventReminder), Debounce: 500 * time.Millisecond,
		Restart: restart.Policy{Before: time.Duration(c.RestartBefore), Window: c.parsed,
			MinInterval: time.Duration(c.RestartMinInterval), MaxSkew: time.Duration(c.MaxClockSkew)},
		DryRun: c.DryRun, Listen: c.Listen,
		Secrets: t.secretStore(c.APITimeout), Events: t.events(log),
		Client: t.client, Namespace: t.namespace, Pod: t.pod, Log: log, Now: time.Now,
	}
	s.Build = exporterBuild()
	// "off" as well as empty: an empty CERTGUARD_PROBE_* takes the default, as every variable.
	api, syncer := probeAddr(c.ProbeAPIServer), probeAddr(c.ProbeSyncer)
	if api != "" || syncer != "" {
		s.Served = &watch.Served{APIServer: api, Syncer: syncer, Now: time.Now}
	}
	// The sidecar lives for months on a few allocations a minute: a smaller heap goal costs
	// nothing measurable in CPU and keeps it near its 20 MiB budget (BenchmarkSidecarIdle:
	// 20.4–20.5 MiB at the default GOGC 100, 20.2–20.4 MiB at 40; docs/sidecar.md). A GOGC the
	// user set wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(40)
	}
	log.Info("watching", "pki_dir", pkiDir, "secret", t.namespace+"/"+t.secret, "listen", c.Listen, "restart_window", c.RestartWindow)
	if err := s.Run(ctx); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}
