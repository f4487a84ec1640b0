// Command certguard keeps vcluster's k0s control plane alive when its certificates expire.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	fleetsvc "github.com/certguard/certguard/fleet"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/restart"
	"github.com/certguard/certguard/watch"
	_ "time/tzdata" // --restart-timezone works in a scratch image
)

const usage = `certguard keeps vcluster's k0s control plane alive when its certificates expire.

k0s signs its one-year leaves with vcluster's CA (CN "kubernetes"), never renews them, and
vcluster copies them from the Secret <release>-certs back over /data/k0s/pki on every start.
certguard, run as an init container before k0s, removes exactly what must go so that fresh
certificates are generated on boot.

Usage:
  certguard repair [flags]     the init container: check, back up, repair
  certguard check [flags]      print every certificate, disk against Secret
  certguard watch [flags]      the sidecar: metrics, Events, a restart before expiry
  certguard fleet [flags]      one row per vcluster certificate Secret on the host cluster
  certguard fleet serve        the host-side service: every vcluster's metrics, /plan
  certguard fleet plan         when each vcluster's k0s leaves fall due, and its restart window
  certguard demo [--dir DIR]   repair an expired vcluster-style PKI in a temp dir, no cluster
  certguard version

Examples:
  $ certguard repair --vcluster-name=my-vc
      In the vcluster pod, before k0s: when k0s's leaves are expired or due within 120 days,
      remove the 14 k0s leaf files from /data/k0s/pki and from Secret my-vc-certs, after a
      backup in /data/k0s/pki.old/<UTC time>/. k0s re-signs them with the same CA on boot.

  $ certguard repair --dry-run -o json
      Print the plan, change nothing.

  $ certguard check --no-secret --pki-dir ./pki
      Table of every certificate in a directory, no cluster needed.

  $ certguard check --vcluster-name=my-vc --namespace=team-a --kubeconfig ~/.kube/config
      The same with the Secret, and where disk and Secret disagree.

  $ certguard watch --vcluster-name=my-vc --restart-window "Sat 02:00-04:00"
      In the same pod: serve x509 metrics on :9793, record Events, and delete the pod in the
      window once a k0s leaf expires within 30 days, so that the init container renews it.

  $ certguard fleet
      Every vcluster's certificates from the host cluster (needs list on secrets), most urgent
      first; exit 4 when any is due, expired or unreadable.

  $ certguard fleet serve --restart-window "Sat 02:00-04:00"
      Follow every vcluster certificate Secret (needs list and watch on secrets) and serve
      x509_cert_* and certguard_vcluster_* metrics on :9793, and the restart plan on /plan.

  $ certguard fleet plan --restart-window "Sat 02:00-04:00" --max-concurrent 2
      When each vcluster's k0s leaves fall due (expiry - --renew-before), and the first window
      opening at or after that with room for it: at most 2 vclusters an opening.

Flags (every flag can be set as CERTGUARD_<NAME>, e.g. CERTGUARD_RENEW_BEFORE=90d; a flag wins):
%s
Exit codes:
  0  nothing due, or repaired, or nothing to do yet (first start)
  1  error: could not read or write (API, disk); what was changed is journaled and finished
     by the next run
  2  usage: a flag or environment value is wrong
  3  refused: a repair is needed but unsafe (clock skew, a dead CA under --strategy leaves,
     a full reset without a clock reference) and the start fails anyway; nothing was changed
     (otherwise the start goes on, exit 0, and the warning says what was held back)
  4  check, fleet: something is due, expired or broken, or a repair would be held back
`

const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitRefused = 3
	exitDue     = 4
)

// duration accepts a "d" unit (120d) in flags and environment.
type duration time.Duration

func (d *duration) UnmarshalText(b []byte) error {
	v, err := pki.ParseDuration(string(b))
	*d = duration(v)
	return err
}
func (d *duration) Set(s string) error { return d.UnmarshalText([]byte(s)) }
func (d *duration) String() string     { return pki.FormatDuration(time.Duration(*d)) }

type config struct {
	PKIDir              string   `env:"PKI_DIR" envDefault:"/data/k0s/pki"`
	BackupDir           string   `env:"BACKUP_DIR"`
	KeepBackups         int      `env:"KEEP_BACKUPS" envDefault:"5"`
	VclusterName        string   `env:"VCLUSTER_NAME"`
	SecretName          string   `env:"SECRET_NAME"`
	Namespace           string   `env:"NAMESPACE"`
	Kubeconfig          string   `env:"KUBECONFIG"`
	PodName             string   `env:"POD_NAME"`
	RenewBefore         duration `env:"RENEW_BEFORE" envDefault:"120d"`
	K0sVersion          string   `env:"K0S_VERSION"`
	Strategy            string   `env:"STRATEGY" envDefault:"auto"`
	DryRun              bool     `env:"DRY_RUN"`
	NoSecret            bool     `env:"NO_SECRET"`
	Output              string   `env:"OUTPUT" envDefault:"text"`
	LogFormat           string   `env:"LOG_FORMAT" envDefault:"text"`
	APITimeout          duration `env:"API_TIMEOUT" envDefault:"30s"`
	MaxClockSkew        duration `env:"MAX_CLOCK_SKEW" envDefault:"5m"`
	Dir                 string   `env:"DEMO_DIR"`
	PageSize            int64    `env:"PAGE_SIZE" envDefault:"100"`
	MaxConcurrent       int      `env:"MAX_CONCURRENT" envDefault:"1"`
	Jitter              float64  `env:"JITTER" envDefault:"0.1"`
	Listen              string   `env:"LISTEN" envDefault:":9793"`
	RestartBefore       duration `env:"RESTART_BEFORE" envDefault:"30d"`
	RestartWindow       string   `env:"RESTART_WINDOW"`
	RestartTimezone     string   `env:"RESTART_TIMEZONE" envDefault:"UTC"`
	RestartMinInterval  duration `env:"RESTART_MIN_INTERVAL" envDefault:"24h"`
	EventReminder       duration `env:"EVENT_REMINDER" envDefault:"6h"`
	RestartDue          bool     `env:"RESTART_DUE"`
	RestartReadyTimeout duration `env:"RESTART_READY_TIMEOUT" envDefault:"15m"`
	LeaseNamespace      string   `env:"LEASE_NAMESPACE"`
	LeaseName           string   `env:"LEASE_NAME" envDefault:"certguard-fleet"`
	// TerminationLog follows the container's terminationMessagePath when that is not the default.
	TerminationLog string `env:"TERMINATION_LOG" envDefault:"/dev/termination-log"`
}

// saNamespaceFile is where a pod finds its namespace.
var saNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// flags declares the flags a command takes, with the environment's values as defaults.
func (c *config) flags(cmd string) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	str := func(p *string, name, help string) { fs.StringVar(p, name, *p, help) }
	in := func(cmds ...string) bool { return slices.Contains(cmds, cmd) }
	if in("repair", "check", "watch") {
		str(&c.PKIDir, "pki-dir", "k0s pki directory on the data volume")
		str(&c.VclusterName, "vcluster-name", "vcluster release name (default: from the pod name <release>-<ordinal> or the pod's release label)")
		str(&c.SecretName, "secret-name", "certificate Secret (default: <vcluster-name>-certs)")
		str(&c.Namespace, "namespace", "namespace of the Secret and pod (default: the service account's namespace)")
		str(&c.PodName, "pod-name", "this pod's name, for Events (default: the hostname)")
		fs.Var(&c.APITimeout, "api-timeout", "how long to retry while the API server is unreachable")
		str(&c.K0sVersion, "k0s-version", "the k0s version of this vcluster, e.g. v1.35.1+k0s.0 (default: read from the k0s image of this pod's spec)")
	}
	if in("repair", "check", "watch", "fleet", "fleet serve", "fleet plan") {
		str(&c.Kubeconfig, "kubeconfig", "kubeconfig file (default: $KUBECONFIG, then in-cluster)")
		fs.Var(&c.RenewBefore, "renew-before", "a leaf that expires within this is due (e.g. 120d, 90d, 720h)")
		str(&c.LogFormat, "log-format", "log format: text or json")
	}
	if in("repair", "check", "fleet", "fleet plan") {
		str(&c.Output, "o", "output: text or json")
		str(&c.Output, "output", "output: text or json")
	}
	if in("repair", "watch") {
		str(&c.BackupDir, "backup-dir", "where repairs keep their backups (default: <pki-dir>.old, beside the pki dir)")
	}
	if in("repair", "watch", "check") {
		fs.Var(&c.MaxClockSkew, "max-clock-skew", "do nothing destructive when this node's clock is further off the API server's")
	}
	switch cmd {
	case "repair":
		fs.IntVar(&c.KeepBackups, "keep-backups", c.KeepBackups, "how many completed backups to keep")
		str(&c.Strategy, "strategy", "auto, leaves or full (see README)")
		fs.BoolVar(&c.DryRun, "dry-run", c.DryRun, "print the plan, change nothing")
	case "check":
		fs.BoolVar(&c.NoSecret, "no-secret", c.NoSecret, "read the pki dir only, no cluster")
	case "watch":
		str(&c.Listen, "listen", "address for /metrics, /healthz and /readyz")
		fs.Var(&c.RestartBefore, "restart-before", "restart the pod when a k0s leaf expires within this (must be below --renew-before)")
		str(&c.RestartWindow, "restart-window", `when restarts may happen, e.g. "Sat 02:00-04:00" (empty: never)`)
		str(&c.RestartTimezone, "restart-timezone", "time zone of --restart-window")
		fs.Var(&c.RestartMinInterval, "restart-min-interval", "at most one restart per this interval (recorded on the Secret)")
		fs.Var(&c.EventReminder, "event-reminder", "repeat a warning Event this often while a certificate stays due")
		fs.BoolVar(&c.DryRun, "dry-run", c.DryRun, "log restarts instead of doing them")
	case "fleet", "fleet serve", "fleet plan":
		str(&c.Namespace, "n", "only this namespace (default: all)")
		str(&c.Namespace, "namespace", "only this namespace (default: all)")
		if cmd != "fleet serve" {
			fs.Int64Var(&c.PageSize, "page-size", c.PageSize, "Secrets per LIST page")
		}
		if cmd == "fleet serve" {
			str(&c.Listen, "listen", "address for /metrics, /plan, /healthz and /readyz")
			fs.BoolVar(&c.RestartDue, "restart-due", c.RestartDue, "in --restart-window, delete the pod of vclusters whose k0s leaves are due and that run certguard's init container")
			fs.BoolVar(&c.DryRun, "dry-run", c.DryRun, "with --restart-due: log restarts instead of doing them")
			fs.Var(&c.RestartMinInterval, "restart-min-interval", "at most one restart of a vcluster per this interval (recorded on its Secret, shared with the sidecar)")
			fs.Var(&c.RestartReadyTimeout, "restart-ready-timeout", "a restarted pod not Ready by then stops further restarts until the window closes")
			str(&c.LeaseNamespace, "lease-namespace", "namespace of the restart Lease (default: the service account's namespace)")
			str(&c.LeaseName, "lease-name", "name of the Lease that keeps two replicas from restarting at once")
			str(&c.PodName, "pod-name", "this replica's name in the Lease and Events (default: the hostname)")
		}
		if cmd != "fleet" {
			str(&c.RestartWindow, "restart-window", `restart window the plan books on, e.g. "Sat 02:00-04:00" (empty: none)`)
			str(&c.RestartTimezone, "restart-timezone", "time zone of --restart-window")
			fs.IntVar(&c.MaxConcurrent, "max-concurrent", c.MaxConcurrent, "at most this many vclusters restarted per window opening (which bounds those in flight too)")
			fs.Float64Var(&c.Jitter, "jitter", c.Jitter, "spread due times by up to this fraction of --renew-before, by each Secret's UID (0 to 0.5; 0: none)")
		}
	case "demo":
		str(&c.Dir, "dir", "directory for the demo PKI (default: a new temp dir)")
	}
	return fs
}

func flagHelp() string {
	var b strings.Builder
	for _, cmd := range []string{"repair", "check", "watch", "fleet", "fleet serve", "fleet plan"} {
		c := config{}
		fs := c.flags(cmd)
		fmt.Fprintf(&b, "  %s:\n", cmd)
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "o" || f.Name == "n" {
				return
			}
			fmt.Fprintf(&b, "    --%-21s %s\n", f.Name, f.Usage)
		})
	}
	return b.String()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a wrong flag or value: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(stdout, usage, flagHelp())
		return exitOK
	}
	cmd := args[0]
	// fleet's two subcommands are commands of their own, with their own flags.
	if cmd == "fleet" && len(args) > 1 && (args[1] == "serve" || args[1] == "plan") {
		cmd, args = "fleet "+args[1], args[1:]
	}
	var cfg config
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: "CERTGUARD_"}); err != nil {
		return fail(stderr, usageError{"environment: " + firstLine(err.Error())})
	}
	terminationLog = cfg.TerminationLog
	switch cmd {
	case "repair", "check", "demo", "fleet", "fleet serve", "fleet plan", "watch":
	case "version":
		return versionCmd(args[1:], cfg.Output, stdout, stderr)
	default:
		return fail(stderr, usageError{fmt.Sprintf("unknown command %q: want repair, check, watch, fleet, demo or version (see certguard --help)", cmd)})
	}
	fs := cfg.flags(cmd)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, usage, flagHelp())
			return exitOK
		}
		return fail(stderr, usageError{cmd + ": " + err.Error() + " (see certguard --help)"})
	}
	if fs.NArg() > 0 {
		return fail(stderr, usageError{fmt.Sprintf("%s: unexpected argument %q (see certguard --help)", cmd, fs.Arg(0))})
	}
	if fs.Lookup("renew-before") != nil {
		if err := pki.CheckRenewBefore(time.Duration(cfg.RenewBefore)); err != nil {
			return fail(stderr, usageError{"--renew-before: " + err.Error()})
		}
	}
	if cfg.Output != "text" && cfg.Output != "json" {
		return fail(stderr, usageError{fmt.Sprintf("-o: must be text or json (got %q)", cfg.Output)})
	}
	if _, err := k0sSource(cfg, nil, nil); err != nil {
		return fail(stderr, err) // a wrong --k0s-version is a usage error before anything is read
	}
	log, err := newLogger(cfg.LogFormat, stderr)
	if err != nil {
		return fail(stderr, err)
	}
	switch cmd {
	case "repair":
		return repair(ctx, cfg, stdout, stderr, log)
	case "check":
		return check(ctx, cfg, stdout, stderr, log)
	case "fleet":
		return fleet(ctx, cfg, stdout, stderr)
	case "fleet serve":
		return fleetServe(ctx, cfg, stderr, log)
	case "fleet plan":
		return fleetPlan(ctx, cfg, stdout, stderr)
	case "watch":
		return watchCmd(ctx, cfg, stderr, log)
	}
	return demo(ctx, cfg, stdout, stderr, log)
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format: must be text or json (got %q)", format)}
}

// writeLine prints one line, also as the pod's termination message so that `kubectl describe
// pod` shows it.
func writeLine(stderr io.Writer, line string) {
	line = strings.ReplaceAll(line, "\n", " ")
	fmt.Fprintln(stderr, line)
	if f, ferr := os.OpenFile(terminationLog, os.O_WRONLY|os.O_TRUNC, 0); ferr == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

// terminationLog is where Kubernetes reads a container's last words (a variable for tests).
var terminationLog = "/dev/termination-log"

// fail prints the one line that says what is wrong, also as the pod's termination message so
// that `kubectl describe pod` shows it, and returns the exit code.
func fail(stderr io.Writer, err error) int {
	writeLine(stderr, "certguard: "+err.Error())
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

// refuse says why a needed repair was not done, on stderr and as the termination message like
// an error, and returns exit code 3.
func refuse(stderr io.Writer, why string) int {
	writeLine(stderr, "certguard: refused: "+why)
	return exitRefused
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

// target resolves namespace, release and Secret, building the API client on the way.
type target struct {
	client    *kube.Client
	namespace string
	release   string
	secret    string
	pod       string
}

var statefulSetPod = regexp.MustCompile(`^(.+)-([0-9]+)$`)

func resolve(ctx context.Context, cfg config) (*target, error) {
	rc, err := kube.Config(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	c, err := kube.NewClient(rc)
	if err != nil {
		return nil, err
	}
	t := &target{client: c, namespace: cfg.Namespace, release: cfg.VclusterName, pod: cfg.PodName}
	if t.namespace == "" {
		b, err := os.ReadFile(saNamespaceFile)
		if err != nil {
			return nil, usageError{"cannot tell the namespace (no " + saNamespaceFile + "): set --namespace"}
		}
		t.namespace = strings.TrimSpace(string(b))
	}
	if t.pod == "" {
		t.pod, _ = os.Hostname()
	}
	if t.release == "" && cfg.SecretName == "" {
		if m := statefulSetPod.FindStringSubmatch(t.pod); m != nil {
			t.release = m[1]
		} else if t.pod != "" {
			// A Deployment's pod name has hashes, not an ordinal: ask the pod's labels.
			if r, err := kube.PodRelease(ctx, c, t.namespace, t.pod); err == nil {
				t.release = r
			}
		}
		if t.release == "" {
			return nil, usageError{fmt.Sprintf("cannot tell the vcluster release from pod %q: set --vcluster-name=<release> (in vcluster.yaml: the plugin's args)", t.pod)}
		}
	}
	t.secret = cfg.SecretName
	if t.secret == "" {
		t.secret = t.release + "-certs"
	}
	return t, nil
}

func repair(ctx context.Context, cfg config, stdout, stderr io.Writer, log *slog.Logger) int {
	strategy, err := pki.ParseStrategy(cfg.Strategy)
	if err != nil {
		return fail(stderr, usageError{"--strategy: " + err.Error()})
	}
	if cfg.KeepBackups < 1 {
		return fail(stderr, usageError{"--keep-backups: must be at least 1"})
	}
	paths, err := pki.ResolvePaths(cfg.PKIDir, cfg.BackupDir)
	if err != nil {
		return fail(stderr, usageError{err.Error()})
	}
	warnIfNotMounted(paths.PKIDir, log)
	t, err := resolve(ctx, cfg)
	if err != nil {
		return fail(stderr, err)
	}
	k0s, err := k0sSource(cfg, t, log)
	if err != nil {
		return fail(stderr, err)
	}
	secret := pki.SecretRef{Namespace: t.namespace, Name: t.secret}
	secrets := &kube.SecretStore{Client: t.client, Namespace: t.namespace, Name: t.secret, Retry: time.Duration(cfg.APITimeout)}
	events := &kube.Events{Client: t.client, Namespace: t.namespace, Pod: t.pod, Log: log}
	r := &pki.Repair{
		RenewBefore: time.Duration(cfg.RenewBefore), DryRun: cfg.DryRun, Log: log, Now: time.Now, K0s: k0s,
		Policy: pki.Policy{Strategy: strategy, MaxClockSkew: time.Duration(cfg.MaxClockSkew)},
		Exec: &pki.Executor{Paths: paths, Secret: secret, Keep: cfg.KeepBackups, Secrets: secrets, Log: log,
			Failpoint: pki.EnvFailpoint()},
	}
	out, err := r.Run(ctx)
	if cfg.Output == "json" {
		_ = pki.WriteJSON(stdout, out)
	} else if out.Report != nil && (cfg.DryRun || out.Plan.Decision != pki.DecideNothing) {
		pki.WritePlan(stdout, out.Plan)
	}
	if err != nil {
		events.Emit(ctx, "Warning", kube.ReasonFailed, "certificate repair failed: "+err.Error())
		return fail(stderr, err)
	}
	p := out.Plan
	for _, w := range p.Warnings {
		log.Warn(w.Text, "code", w.Code)
	}
	if caDue, ok := p.Has(pki.CodeCADue); ok && !cfg.DryRun {
		events.Emit(ctx, "Warning", kube.ReasonCAExpiryWarning, caDue.Text)
	}
	// What certguard found broken and left alone (it never blocks a start for it) is said on the
	// pod too, where an operator looks.
	for _, c := range []pki.Code{pki.CodeKeptBroken, pki.CodeCADrift, pki.CodeCAUnjudged, pki.CodeRepairHeld} {
		if w, ok := p.Has(c); ok && !cfg.DryRun {
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
		if !cfg.DryRun {
			events.Emit(ctx, "Warning", kube.ReasonRefused, p.Refusal.Text)
		}
		return refuse(stderr, p.Refusal.Text+"; nothing was changed")
	case cfg.DryRun:
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
	if mp := pki.MountPoint(dir, mi); mp == "/" {
		log.Warn("the pki dir is not on a mounted volume: add volumeMounts [{name: data, mountPath: /data}] to this container, "+
			"or certguard checks a directory k0s never reads", "pki_dir", dir)
	}
}

func check(ctx context.Context, cfg config, stdout, stderr io.Writer, log *slog.Logger) int {
	disk, err := pki.ReadDir(cfg.PKIDir)
	if err != nil {
		return fail(stderr, err)
	}
	if cfg.NoSecret && !disk.Present {
		// Nothing at all to judge: most likely a wrong --pki-dir, which an empty table would hide.
		return fail(stderr, fmt.Errorf("pki dir %s does not exist, and --no-secret reads nothing else: nothing to check", cfg.PKIDir))
	}
	sec := pki.FromSecret(nil)
	// The clock is judged as repair judges it: against the API server's, when there is one.
	pol := pki.Policy{Strategy: pki.StrategyAuto, MaxClockSkew: time.Duration(cfg.MaxClockSkew)}
	var t *target
	if !cfg.NoSecret {
		if t, err = resolve(ctx, cfg); err != nil {
			return fail(stderr, err)
		}
		store := &kube.SecretStore{Client: t.client, Namespace: t.namespace, Name: t.secret, Retry: time.Duration(cfg.APITimeout)}
		s, err := store.Get(ctx)
		if err != nil {
			return fail(stderr, err)
		}
		if s == nil {
			log.Warn("Secret not found: showing the disk only", "secret", t.namespace+"/"+t.secret)
		}
		sec = pki.FromSecret(s)
		pol.Secret = pki.SecretRef{Namespace: t.namespace, Name: t.secret}
		if st := store.ServerTime(); !st.IsZero() {
			pol.ClockSkew, pol.ClockKnown = time.Since(st), true
		}
	}
	k0s, err := k0sSource(cfg, t, log)
	if err != nil {
		return fail(stderr, err)
	}
	r := pki.Inspect(disk, sec, time.Now(), time.Duration(cfg.RenewBefore))
	if r.K0sMatters() {
		r.SetK0s(k0s(ctx))
	}
	if cfg.Output == "json" {
		_ = pki.WriteJSON(stdout, pki.Expiration(r))
	} else {
		_ = pki.WriteTable(stdout, r)
	}
	if !disk.Present {
		log.Info("no pki dir", "pki_dir", cfg.PKIDir)
	}
	// check and repair agree by construction: findings are what repair's plan (auto) would act on
	// or warn about, not every row that is not ok (k0s rewrites admin.conf and scheduler.conf and
	// re-issues its etcd leaves at every start, whatever they held).
	p := pki.BuildPlan(r, pol)
	if p.Decision != pki.DecideNothing {
		return exitDue
	}
	for _, c := range []pki.Code{pki.CodeCADue, pki.CodeCAUnjudged, pki.CodeCADrift, pki.CodeKeptBroken, pki.CodeKeptDue, pki.CodeRepairHeld} {
		if _, ok := p.Has(c); ok {
			return exitDue
		}
	}
	return exitOK
}

// demo lays out a vcluster v0.25 PKI whose k0s leaves expired 35 days ago, with its Secret held
// in memory, and runs check → repair → check on it.
func demo(ctx context.Context, cfg config, stdout, stderr io.Writer, log *slog.Logger) int {
	dir := cfg.Dir
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
		_ = pki.WriteTable(stdout, pki.Inspect(disk, pki.FromSecret(s), time.Now(), 120*24*time.Hour))
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
	pki.WritePlan(stdout, out.Plan)
	s, _ := secret.Get(ctx)
	fmt.Fprintf(stdout, "\nbackup: %s\nSecret now has %d keys; the pki dir no longer has the 14 k0s leaf files.\n", out.Backup, len(s.Data))
	fmt.Fprintf(stdout, "\n== certguard check (after): on the next boot k0s re-signs the missing leaves with the same CA\n")
	show()
	fmt.Fprintf(stdout, "\n== certguard repair (again): a second run is a no-op\n")
	out, err = r.Run(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	pki.WritePlan(stdout, out.Plan)
	return exitOK
}

// fleet prints one row per vcluster certificate Secret, most urgent first.
func fleet(ctx context.Context, cfg config, stdout, stderr io.Writer) int {
	c, err := fleetClient(cfg)
	if err != nil {
		return fail(stderr, err)
	}
	now := time.Now()
	rows, err := fleetRows(ctx, c, cfg, now)
	if err != nil {
		return fail(stderr, err)
	}
	pki.SortFleet(rows)
	if cfg.Output == "json" {
		if rows == nil {
			rows = []pki.FleetRow{}
		}
		_ = pki.WriteJSON(stdout, rows)
	} else {
		_ = pki.WriteFleet(stdout, rows, now)
	}
	for _, r := range rows {
		if r.Status == pki.FleetExpired || r.Status == pki.FleetDue || r.Status == pki.FleetUnreadable {
			return exitDue
		}
	}
	return exitOK
}

// fleetRows reads every vcluster certificate Secret with paginated LISTs (never a GET per
// Secret) into one row each, judged at now: `certguard fleet` and `certguard fleet plan`.
func fleetRows(ctx context.Context, c *kube.Client, cfg config, now time.Time) ([]pki.FleetRow, error) {
	var rows []pki.FleetRow
	_, err := kube.EachCertSecret(ctx, c, cfg.Namespace, cfg.PageSize, func(s *pki.Secret) {
		rows = append(rows, pki.Fleet(s, now, time.Duration(cfg.RenewBefore)))
	})
	return rows, err
}

// minRestartInterval is the floor of --restart-min-interval: a vcluster pod takes a minute or
// two to come back, and the leaves it renews last a year, so more than one restart an hour is
// a loop, not maintenance.
const minRestartInterval = time.Hour

func watchCmd(ctx context.Context, cfg config, stderr io.Writer, log *slog.Logger) int {
	window, _, err := restartWindow(cfg)
	if err != nil {
		return fail(stderr, err)
	}
	// Checked whether or not a window is set: the window may come later from the environment,
	// and certguard_next_restart_timestamp_seconds and the logged decision use --restart-before
	// either way. A restart at or beyond --renew-before would find nothing due at the init
	// container and renew nothing.
	if cfg.RestartBefore >= cfg.RenewBefore {
		return fail(stderr, usageError{fmt.Sprintf("--restart-before (%s) must be below --renew-before (%s), or the init container would not renew what the restart is for",
			&cfg.RestartBefore, &cfg.RenewBefore)})
	}
	if cfg.RestartBefore <= 0 {
		return fail(stderr, usageError{fmt.Sprintf("--restart-before must be above 0 (got %s)", &cfg.RestartBefore)})
	}
	// A restart loop is what the interval guards against: 0 restarted a pod 6 times in 12 s.
	if time.Duration(cfg.RestartMinInterval) < minRestartInterval {
		return fail(stderr, usageError{fmt.Sprintf("--restart-min-interval must be at least %s (got %s): each restart takes the virtual control plane down",
			pki.FormatDuration(minRestartInterval), &cfg.RestartMinInterval)})
	}
	// The backup dir is resolved as the init container resolves it (one place, pki.ResolvePaths);
	// the pki dir is watched under its configured name, so that a swap under it is followed.
	paths, err := pki.ResolvePaths(cfg.PKIDir, cfg.BackupDir)
	if err != nil {
		return fail(stderr, usageError{err.Error()})
	}
	pkiDir, err := filepath.Abs(cfg.PKIDir)
	if err != nil {
		return fail(stderr, usageError{"--pki-dir: " + err.Error()})
	}
	backupDir := paths.BackupDir
	t, err := resolve(ctx, cfg)
	if err != nil {
		return fail(stderr, err)
	}
	k0s, err := k0sSource(cfg, t, log)
	if err != nil {
		return fail(stderr, err)
	}
	s := &watch.Sidecar{
		K0s:    k0s,
		PKIDir: pkiDir, BackupDir: backupDir, RenewBefore: time.Duration(cfg.RenewBefore),
		Reminder: time.Duration(cfg.EventReminder), Debounce: 500 * time.Millisecond,
		Restart: restart.Policy{Before: time.Duration(cfg.RestartBefore), Window: window,
			MinInterval: time.Duration(cfg.RestartMinInterval), MaxSkew: time.Duration(cfg.MaxClockSkew)},
		DryRun: cfg.DryRun, Listen: cfg.Listen,
		Secrets: &kube.SecretStore{Client: t.client, Namespace: t.namespace, Name: t.secret, Retry: time.Duration(cfg.APITimeout)},
		Events:  &kube.Events{Client: t.client, Namespace: t.namespace, Pod: t.pod, Log: log},
		Client:  t.client, Namespace: t.namespace, Pod: t.pod, Log: log, Now: time.Now,
	}
	// The sidecar lives for months on a few allocations a minute: a smaller heap goal costs
	// nothing measurable in CPU and keeps it within its 20 MiB budget (BenchmarkSidecarIdle:
	// 20.5 MiB at the default GOGC 100, 19.9–20.0 MiB at 40). A GOGC the user set wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(40)
	}
	log.Info("watching", "pki_dir", pkiDir, "secret", t.namespace+"/"+t.secret, "listen", cfg.Listen, "restart_window", cfg.RestartWindow)
	if err := s.Run(ctx); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// fleetClient is the client of the one-shot fleet commands, after checking their --page-size.
func fleetClient(cfg config) (*kube.Client, error) {
	if cfg.PageSize < 1 {
		return nil, usageError{"--page-size: must be at least 1"}
	}
	return hostClient(cfg)
}

// hostClient is the API client of the fleet commands, which have no vcluster to resolve.
func hostClient(cfg config) (*kube.Client, error) {
	rc, err := kube.Config(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return kube.NewClient(rc)
}

// restartWindow reads --restart-window in --restart-timezone, for the sidecar and the fleet.
func restartWindow(cfg config) (*restart.Window, *time.Location, error) {
	loc, err := time.LoadLocation(cfg.RestartTimezone)
	if err != nil {
		return nil, nil, usageError{"--restart-timezone: " + err.Error()}
	}
	w, err := restart.ParseWindow(cfg.RestartWindow, loc)
	if err != nil {
		return nil, nil, usageError{"--restart-window: " + err.Error()}
	}
	return w, loc, nil
}

// planWindow reads --restart-window, --restart-timezone and --max-concurrent for fleet serve and
// fleet plan, with the sidecar's window syntax.
func planWindow(cfg config) (*restart.Window, *time.Location, error) {
	w, loc, err := restartWindow(cfg)
	if err != nil {
		return nil, nil, err
	}
	if cfg.MaxConcurrent < 1 {
		return nil, nil, usageError{fmt.Sprintf("--max-concurrent: must be at least 1 (got %d)", cfg.MaxConcurrent)}
	}
	// Later than due by more than half of --renew-before would leave too little of it to book in.
	if cfg.Jitter < 0 || cfg.Jitter > 0.5 || cfg.Jitter != cfg.Jitter {
		return nil, nil, usageError{fmt.Sprintf("--jitter: must be from 0 to 0.5 (got %v)", cfg.Jitter)}
	}
	return w, loc, nil
}

// fleetPlan prints the restart plan from one paginated LIST, as `certguard fleet` reads Secrets.
func fleetPlan(ctx context.Context, cfg config, stdout, stderr io.Writer) int {
	w, loc, err := planWindow(cfg)
	if err != nil {
		return fail(stderr, err)
	}
	c, err := fleetClient(cfg)
	if err != nil {
		return fail(stderr, err)
	}
	now := time.Now()
	state := fleetsvc.NewState()
	if _, err := kube.EachCertSecret(ctx, c, cfg.Namespace, cfg.PageSize, func(s *pki.Secret) {
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
	if err := kube.EachStatefulSet(ctx, c, cfg.Namespace, cfg.PageSize, func(s *kube.StatefulSet) { wl.Set(s.Namespace+"/"+s.Name, s) }); err != nil {
		fmt.Fprintf(stderr, "certguard: note: every vcluster booked as if it ran certguard's init container: %v\n", err)
	} else {
		workloads = wl
	}
	set := planSettings(cfg, w)
	p := fleetsvc.BuildPlan(state.Vclusters(now, set.RenewBefore, workloads, parseInitContainer), now, set, nil)
	if cfg.Output == "json" {
		_ = pki.WriteJSON(stdout, p)
	} else {
		_ = fleetsvc.WritePlan(stdout, p, loc)
	}
	return exitOK
}

// fleetServe follows every vcluster certificate Secret and StatefulSet with informers and serves
// metrics and the plan until it is stopped; with --restart-due it also restarts the vclusters
// that are due, in the window. RBAC refusing list or watch ends it with one line naming the verb:
// no retry makes a missing grant appear, and a crash-looping pod with that line as its
// termination message says what to fix.
func fleetServe(ctx context.Context, cfg config, stderr io.Writer, log *slog.Logger) int {
	w, _, err := planWindow(cfg)
	if err != nil {
		return fail(stderr, err)
	}
	if cfg.RestartDue {
		switch {
		case w == nil:
			return fail(stderr, usageError{"--restart-due needs --restart-window: restarts happen only inside it"})
		case time.Duration(cfg.RestartMinInterval) < minRestartInterval:
			return fail(stderr, usageError{fmt.Sprintf("--restart-min-interval must be at least %s (got %s): each restart takes a virtual control plane down",
				pki.FormatDuration(minRestartInterval), &cfg.RestartMinInterval)})
		case cfg.RestartReadyTimeout <= 0:
			return fail(stderr, usageError{"--restart-ready-timeout must be above 0"})
		}
	}
	c, err := hostClient(cfg)
	if err != nil {
		return fail(stderr, err)
	}
	svc := &fleetsvc.Service{Client: c, Namespace: cfg.Namespace, Listen: cfg.Listen, RenewBefore: time.Duration(cfg.RenewBefore),
		Plan: planSettings(cfg, w), Parse: parseInitContainer, RestartDue: cfg.RestartDue, DryRun: cfg.DryRun,
		Tick: restartTick, LeaseBudget: leaseDuration / 3, Log: log}
	if cfg.RestartDue {
		if svc.Lease, err = restartLease(cfg, c); err != nil {
			return fail(stderr, err)
		}
	}
	scope := cfg.Namespace
	if scope == "" {
		scope = "all namespaces"
	}
	log.Info("following vcluster certificate Secrets and StatefulSets", "namespace", scope, "restart_window", cfg.RestartWindow,
		"restart_due", cfg.RestartDue, "dry_run", cfg.DryRun)
	if err := svc.Run(ctx); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// planSettings are the fleet plan's settings from the flags.
func planSettings(cfg config, w *restart.Window) fleetsvc.PlanSettings {
	return fleetsvc.PlanSettings{Window: w, MaxConcurrent: cfg.MaxConcurrent, RenewBefore: time.Duration(cfg.RenewBefore),
		MinInterval: time.Duration(cfg.RestartMinInterval), ReadyTimeout: time.Duration(cfg.RestartReadyTimeout),
		Jitter: cfg.Jitter}
}

// parseInitContainer reads certguard's init container as the binary itself would: the repair
// command's flag set over its literal environment (CERTGUARD_*), then the same checks repair
// makes before it acts. It is the fleet's only way to know what a restart will do.
func parseInitContainer(args []string, environ map[string]string) (fleetsvc.InitSettings, error) {
	var cfg config
	if environ == nil {
		environ = map[string]string{} // never this process's own environment
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: "CERTGUARD_", Environment: environ}); err != nil {
		return fleetsvc.InitSettings{}, errors.New("environment: " + firstLine(err.Error()))
	}
	fs := cfg.flags("repair")
	if err := fs.Parse(args); err != nil {
		return fleetsvc.InitSettings{}, err
	}
	if fs.NArg() > 0 {
		return fleetsvc.InitSettings{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	strategy, err := pki.ParseStrategy(cfg.Strategy)
	if err != nil {
		return fleetsvc.InitSettings{}, fmt.Errorf("--strategy: %w", err)
	}
	if cfg.KeepBackups < 1 {
		return fleetsvc.InitSettings{}, errors.New("--keep-backups: must be at least 1")
	}
	if err := pki.CheckRenewBefore(time.Duration(cfg.RenewBefore)); err != nil {
		return fleetsvc.InitSettings{}, fmt.Errorf("--renew-before: %w", err)
	}
	return fleetsvc.InitSettings{RenewBefore: time.Duration(cfg.RenewBefore), Strategy: strategy, DryRun: cfg.DryRun, PKIDir: cfg.PKIDir,
		SecretName: cfg.SecretName, VclusterName: cfg.VclusterName, Namespace: cfg.Namespace}, nil
}

// restartTick is how often the restarter looks: well under the Lease's duration, which it
// renews each time, and short against a restart window.
const (
	restartTick   = 10 * time.Second
	leaseDuration = 60 * time.Second
)

// restartLease is fleet serve's restart Lease, in --lease-namespace or the service account's
// namespace, held as --pod-name or the hostname.
func restartLease(cfg config, c *kube.Client) (*kube.Lease, error) {
	ns := cfg.LeaseNamespace
	if ns == "" {
		b, err := os.ReadFile(saNamespaceFile)
		if err != nil {
			return nil, usageError{"cannot tell the namespace of the restart Lease (no " + saNamespaceFile + "): set --lease-namespace"}
		}
		ns = strings.TrimSpace(string(b))
	}
	id := cfg.PodName
	if id == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, err
		}
		id = h
	}
	return &kube.Lease{Client: c, Namespace: ns, Name: cfg.LeaseName, Identity: id, Duration: leaseDuration}, nil
}
