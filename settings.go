package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/restart"
)

// Each command owns one settings struct (repair.go, check.go, …). Every field with an env tag is
// also a flag of that command: CERTGUARD_<TAG> gives its default and the flag wins. The groups
// below are the settings several commands share, each declared and checked in one place.

// command is one certguard command: its settings, read from the environment and then from its
// flags, checked once (validate), then run.
type command interface {
	flags(fs *flag.FlagSet)
	// validate checks and resolves what the flags cannot (a usage error: exit 2), before anything
	// is read or written.
	validate() error
	run(ctx context.Context, o streams) int
}

// streams are where a command writes: its result, its one error line, and its log.
type streams struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

// parseSettings reads a command's settings as the binary does: the environment (environ, or
// this process's when nil), then args with the command's own flag set, then validate.
func parseSettings(name string, c command, args []string, environ map[string]string) error {
	opts := env.Options{Prefix: "CERTGUARD_"}
	if environ != nil {
		opts.Environment = environ
	}
	// A CERTGUARD_ variable that does not parse fails every command, not only those that read
	// it: the environment is often shared by the containers of a pod, and a typo there is found
	// at the first start rather than when another command runs.
	for _, other := range commandNames {
		into := c // the command's own settings are parsed once, in their place in the order
		if other != name {
			into = newCommand(other)
		}
		if err := env.ParseWithOptions(into, opts); err != nil {
			return usageError{"environment: " + firstLine(err.Error())}
		}
	}
	fs := flagSet(name, c)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{name + ": " + err.Error() + " (see certguard --help)"}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q (see certguard --help)", name, fs.Arg(0))}
	}
	return c.validate()
}

// firstError runs checks in order and returns the first error.
func firstError(checks ...func() error) error {
	for _, check := range checks {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// flagSet declares a command's flags, with its settings' current values as defaults.
func flagSet(name string, c command) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.flags(fs)
	return fs
}

func strFlag(fs *flag.FlagSet, p *string, name, help string) { fs.StringVar(p, name, *p, help) }

// Logging is the log format, which every command but version takes.
type Logging struct {
	LogFormat string `env:"LOG_FORMAT" envDefault:"text"`
}

func (l *Logging) logs() *Logging { return l }

func (l *Logging) validate() error {
	if l.LogFormat != "text" && l.LogFormat != "json" {
		return usageError{fmt.Sprintf("--log-format: must be text or json (got %q)", l.LogFormat)}
	}
	return nil
}

func (l *Logging) logger(w io.Writer) *slog.Logger {
	if l.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// Cluster is what every command that reads the cluster takes: how to reach it, when a leaf is
// due, and the log format.
type Cluster struct {
	Kubeconfig  string   `env:"KUBECONFIG"`
	RenewBefore duration `env:"RENEW_BEFORE" envDefault:"120d"`
	Logging
}

func (c *Cluster) flags(fs *flag.FlagSet) {
	strFlag(fs, &c.Kubeconfig, "kubeconfig", "kubeconfig file (default: $KUBECONFIG, then in-cluster)")
	fs.Var(&c.RenewBefore, "renew-before", "a leaf that expires within this is due (e.g. 120d, 90d, 720h)")
	strFlag(fs, &c.LogFormat, "log-format", "log format: text or json")
}

func (c *Cluster) validate() error {
	if err := pki.CheckRenewBefore(time.Duration(c.RenewBefore)); err != nil {
		return usageError{"--renew-before: " + err.Error()}
	}
	return c.Logging.validate()
}

// output is -o/--output: text or json.
type OutputFormat struct {
	Output string `env:"OUTPUT" envDefault:"text"`
}

func (o *OutputFormat) flags(fs *flag.FlagSet) {
	strFlag(fs, &o.Output, "o", "output: text or json")
	strFlag(fs, &o.Output, "output", "output: text or json")
}

func (o *OutputFormat) validate() error {
	if o.Output != "text" && o.Output != "json" {
		return usageError{fmt.Sprintf("-o: must be text or json (got %q)", o.Output)}
	}
	return nil
}

// InPod is what repair, check and watch take about the vcluster pod they run in (or look at).
type InPod struct {
	Cluster
	PKIDir       string   `env:"PKI_DIR" envDefault:"/data/k0s/pki"`
	VclusterName string   `env:"VCLUSTER_NAME"`
	SecretName   string   `env:"SECRET_NAME"`
	Namespace    string   `env:"NAMESPACE"`
	PodName      string   `env:"POD_NAME"`
	APITimeout   duration `env:"API_TIMEOUT" envDefault:"30s"`
	K0sVersion   string   `env:"K0S_VERSION"`
	MaxClockSkew duration `env:"MAX_CLOCK_SKEW" envDefault:"5m"`
	// k0s is --k0s-version, parsed once (nil: not set).
	k0s *pki.K0s
}

func (p *InPod) flags(fs *flag.FlagSet) {
	p.Cluster.flags(fs)
	strFlag(fs, &p.PKIDir, "pki-dir", "k0s pki directory on the data volume")
	strFlag(fs, &p.VclusterName, "vcluster-name", "vcluster release name (default: from the pod name <release>-<ordinal> or the pod's release label)")
	strFlag(fs, &p.SecretName, "secret-name", "certificate Secret (default: <vcluster-name>-certs)")
	strFlag(fs, &p.Namespace, "namespace", "namespace of the Secret and pod (default: the service account's namespace)")
	strFlag(fs, &p.PodName, "pod-name", "this pod's name, for Events (default: the hostname)")
	fs.Var(&p.APITimeout, "api-timeout", "how long to retry while the API server is unreachable")
	strFlag(fs, &p.K0sVersion, "k0s-version", "the k0s version of this vcluster, e.g. v1.35.1+k0s.0 (default: read from the k0s image of this pod's spec)")
	fs.Var(&p.MaxClockSkew, "max-clock-skew", "do nothing destructive when this node's clock is further off the API server's")
}

func (p *InPod) validate() error {
	if err := p.Cluster.validate(); err != nil {
		return err
	}
	if p.K0sVersion != "" {
		k, err := pki.ParseK0sVersion(p.K0sVersion)
		if err != nil {
			return usageError{"--k0s-version: " + err.Error()}
		}
		k.From = pki.K0sFromFlag
		p.k0s = &k
	}
	return nil
}

// Windowing is --restart-window in --restart-timezone (the sidecar's and the fleet's), parsed once.
type Windowing struct {
	RestartWindow   string `env:"RESTART_WINDOW"`
	RestartTimezone string `env:"RESTART_TIMEZONE" envDefault:"UTC"`
	parsed          *restart.Window
	loc             *time.Location
}

func (w *Windowing) flags(fs *flag.FlagSet, help string) {
	strFlag(fs, &w.RestartWindow, "restart-window", help)
	strFlag(fs, &w.RestartTimezone, "restart-timezone", "time zone of --restart-window")
}

func (w *Windowing) validate() error {
	loc, err := time.LoadLocation(w.RestartTimezone)
	if err != nil {
		return usageError{"--restart-timezone: " + err.Error()}
	}
	if w.parsed, err = restart.ParseWindow(w.RestartWindow, loc); err != nil {
		return usageError{"--restart-window: " + err.Error()}
	}
	w.loc = loc
	return nil
}

// minRestartInterval is the floor of --restart-min-interval: a vcluster pod takes a minute or
// two to come back, and the leaves it renews last a year, so more than one restart an hour is
// a loop, not maintenance (0 restarted a pod 6 times in 12 s).
const minRestartInterval = time.Hour

func checkMinInterval(d duration) error {
	if time.Duration(d) < minRestartInterval {
		return usageError{fmt.Sprintf("--restart-min-interval must be at least %s (got %s): each restart takes a virtual control plane down",
			pki.FormatDuration(minRestartInterval), &d)}
	}
	return nil
}

// duration accepts a "d" unit (120d) in flags and environment.
type duration time.Duration

func (d *duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	*d = duration(v)
	return err
}
func (d *duration) Set(s string) error { return d.UnmarshalText([]byte(s)) }
func (d *duration) String() string     { return pki.FormatDuration(time.Duration(*d)) }

// parseDuration is time.ParseDuration plus a whole-day unit, as in "90d" or "1d12h". A value
// beyond what a time.Duration holds (about 106751 days) is an error: it used to wrap to a
// negative duration, under which nothing is ever due.
func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q: want e.g. 120d, 90d12h or 720h", s)
	tooLong := fmt.Errorf("invalid duration %q: at most %dd", s, math.MaxInt64/int64(24*time.Hour))
	var total time.Duration
	rest := s
	if i := strings.Index(rest, "d"); i > 0 {
		days, err := strconv.Atoi(rest[:i])
		if err != nil || days < 0 {
			return 0, bad
		}
		if int64(days) > math.MaxInt64/int64(24*time.Hour) {
			return 0, tooLong
		}
		total = time.Duration(days) * 24 * time.Hour
		rest = rest[i+1:]
		if rest == "" {
			return total, nil
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil || d < 0 {
		return 0, bad
	}
	if d > math.MaxInt64-total {
		return 0, tooLong
	}
	return total + d, nil
}
