package main

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"
)

var update = flag.Bool("update", false, "rewrite docs/flags.md from the commands' flag sets")

// setting is one setting of a command: its flags (aliases share one), its variable, its default.
type setting struct {
	flags      []string
	env, deflt string
	help       string
	typ        reflect.Type
}

// settingsOf reads a command's settings from its struct (env tags) and its flag set, paired by
// the address a flag writes to: what the binary parses, not a list kept beside it.
func settingsOf(t *testing.T, name string) []*setting {
	c := newCommand(name)
	byAddr := map[uintptr]*setting{}
	var order []*setting
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for i := 0; i < v.NumField(); i++ {
			f, sf := v.Field(i), v.Type().Field(i)
			if tag, ok := sf.Tag.Lookup("env"); ok {
				s := &setting{env: "CERTGUARD_" + tag, deflt: sf.Tag.Get("envDefault"), typ: f.Type()}
				byAddr[f.Addr().Pointer()] = s
				order = append(order, s)
			} else if f.Kind() == reflect.Struct && sf.IsExported() {
				walk(f)
			}
		}
	}
	walk(reflect.ValueOf(c).Elem())
	flagSet(name, c).VisitAll(func(f *flag.Flag) {
		s, ok := byAddr[reflect.ValueOf(f.Value).Pointer()]
		if !ok {
			t.Errorf("%s --%s sets no field with a CERTGUARD_ variable", name, f.Name)
			return
		}
		s.flags = append(s.flags, f.Name)
		s.help = f.Usage
	})
	return order
}

func flagsDoc(t *testing.T) string {
	var b strings.Builder
	b.WriteString("# Flags and environment\n\n")
	b.WriteString("Generated from the commands' flag sets by `go test -run TestFlagsDoc -update .`; a test keeps it in sync.\n")
	b.WriteString("Every flag can also be set as the variable beside it; a flag wins over the variable. A variable with no flag is\n")
	b.WriteString("read from the environment only.\n")
	for _, name := range commandNames {
		fmt.Fprintf(&b, "\n## certguard %s\n\n| flag | variable | default | what it does |\n|---|---|---|---|\n", name)
		for _, s := range settingsOf(t, name) {
			names := "(environment only)"
			if len(s.flags) > 0 {
				var fs []string
				for i := len(s.flags) - 1; i >= 0; i-- { // VisitAll sorts: "output" after "o"
					fs = append(fs, "`-"+strings.Repeat("-", min(len(s.flags[i])-1, 1))+s.flags[i]+"`")
				}
				names = strings.Join(fs, ", ")
			}
			help := s.help
			if help == "" {
				help = envOnlyHelp[s.env]
			}
			fmt.Fprintf(&b, "| %s | `%s` | %s | %s |\n", names, s.env, quoted(s.deflt), strings.ReplaceAll(help, "|", `\|`))
		}
	}
	return b.String()
}

// quoted is a default as code, or "-" when there is none.
func quoted(v string) string {
	if v == "" {
		return "-"
	}
	return "`" + v + "`"
}

// envOnlyHelp says what the variables without a flag do.
var envOnlyHelp = map[string]string{
	"CERTGUARD_RESTART_MIN_INTERVAL":  "fleet serve's, so that the plan is the one the service makes",
	"CERTGUARD_RESTART_READY_TIMEOUT": "fleet serve's, so that the plan is the one the service makes",
	"CERTGUARD_LOG_FORMAT":            "log format: text or json",
}

// TestFlagsDoc keeps docs/flags.md what the binary parses.
func TestFlagsDoc(t *testing.T) {
	got := flagsDoc(t)
	if *update {
		if err := os.WriteFile("docs/flags.md", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("docs/flags.md")
	if err != nil || string(want) != got {
		t.Errorf("docs/flags.md is not what the flag sets say: run go test -run TestFlagsDoc -update . (%v)", err)
	}
}

// TestEveryFlagIsItsVariable: for every flag of every command, the flag and its CERTGUARD_
// variable, given the same value, make the same settings; the variable alone differs from the
// defaults. It fails when a flag writes elsewhere than its variable, or a variable is not read.
func TestEveryFlagIsItsVariable(t *testing.T) {
	sample := map[reflect.Kind]string{reflect.String: "sample", reflect.Bool: "true", reflect.Int: "7", reflect.Int64: "7", reflect.Float64: "0.25"}
	for _, name := range commandNames {
		for _, s := range settingsOf(t, name) {
			v, ok := sample[s.typ.Kind()]
			if s.typ == reflect.TypeOf(duration(0)) {
				v = "7d"
			}
			if !ok {
				t.Fatalf("%s %s: no sample value for a %s", name, s.env, s.typ)
			}
			parse := func(environ map[string]string, args []string) command {
				c := newCommand(name)
				if err := env.ParseWithOptions(c, env.Options{Prefix: "CERTGUARD_", Environment: environ}); err != nil {
					t.Fatalf("%s %s=%s: %v", name, s.env, v, err)
				}
				if err := flagSet(name, c).Parse(args); err != nil {
					t.Fatalf("%s %v: %v", name, args, err)
				}
				return c
			}
			byEnv := parse(map[string]string{s.env: v}, nil)
			if reflect.DeepEqual(byEnv, parse(map[string]string{}, nil)) {
				t.Errorf("%s: %s=%s changes nothing", name, s.env, v)
			}
			for _, f := range s.flags {
				if byFlag := parse(map[string]string{}, []string{"--" + f + "=" + v}); !reflect.DeepEqual(byEnv, byFlag) {
					t.Errorf("%s: --%s=%s and %s=%s differ", name, f, v, s.env, v)
				}
			}
		}
	}
}

// TestFlagContract: flag and variable names are a contract users' Helm values depend on. The
// lists below are written out by hand (what v0.1 shipped, plus --k0s-version and --jitter):
// removing or renaming a flag fails here, and so does adding one without saying so. A flag's
// variable is CERTGUARD_ and its name in capitals with "_" for "-", except -o (OUTPUT), -n
// (NAMESPACE) and demo's --dir (DEMO_DIR).
func TestFlagContract(t *testing.T) {
	pod := []string{"api-timeout", "k0s-version", "kubeconfig", "log-format", "max-clock-skew", "namespace", "pki-dir", "pod-name", "renew-before", "secret-name", "vcluster-name"}
	host := []string{"kubeconfig", "log-format", "n", "namespace", "renew-before"}
	plan := []string{"jitter", "max-concurrent", "restart-timezone", "restart-window"}
	want := map[string][]string{
		"repair":      append([]string{"backup-dir", "dry-run", "keep-backups", "o", "output", "strategy"}, pod...),
		"check":       append([]string{"no-secret", "o", "output"}, pod...),
		"watch":       append([]string{"backup-dir", "dry-run", "event-reminder", "listen", "probe-apiserver", "probe-syncer", "restart-before", "restart-min-interval", "restart-timezone", "restart-window"}, pod...),
		"fleet":       append([]string{"o", "output", "page-size"}, host...),
		"fleet plan":  append(append([]string{"o", "output", "page-size"}, host...), plan...),
		"fleet serve": append(append([]string{"dry-run", "lease-name", "lease-namespace", "listen", "pod-name", "probe-served", "restart-due", "restart-min-interval", "restart-ready-timeout"}, host...), plan...),
		"demo":        {"dir"},
		"version":     {"o", "output"},
	}
	exception := map[string]string{"o": "CERTGUARD_OUTPUT", "n": "CERTGUARD_NAMESPACE", "dir": "CERTGUARD_DEMO_DIR"}
	for _, name := range commandNames {
		var got []string
		for _, s := range settingsOf(t, name) {
			for _, f := range s.flags {
				got = append(got, f)
				env := exception[f]
				if env == "" {
					env = "CERTGUARD_" + strings.ToUpper(strings.ReplaceAll(f, "-", "_"))
				}
				if s.env != env {
					t.Errorf("%s --%s is read from %s, want %s", name, f, s.env, env)
				}
			}
		}
		w := slices.Clone(want[name])
		slices.Sort(w)
		slices.Sort(got)
		if !slices.Equal(got, w) {
			t.Errorf("%s flags: %v, want %v", name, got, w)
		}
	}
}
