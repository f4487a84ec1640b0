package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestWatchRefusesRestartsThatRenewNothing: settings under which a restart would renew nothing,
// or restart the pod in a loop, end `certguard watch` at start-up with one line and exit 2,
// before it talks to any API server. Valid settings get past the check (and then fail on the
// missing kubeconfig this test gives them, which proves the check let them through).
func TestWatchRefusesRestartsThatRenewNothing(t *testing.T) {
	cases := []startupCase{
		{"restart-before equals renew-before, no window", nil, []string{"--restart-before", "120d", "--renew-before", "120d"}, "--restart-before (120d) must be below --renew-before (120d)"},
		{"restart-before above renew-before, no window", nil, []string{"--restart-before", "130d"}, "must be below --renew-before"},
		{"restart-before above renew-before, window", nil, []string{"--restart-before", "130d", "--restart-window", "Sat 02:00-04:00"}, "must be below --renew-before"},
		{"restart-before from the environment", []string{"CERTGUARD_RESTART_BEFORE=200d"}, nil, "must be below --renew-before"},
		{"restart-before zero", nil, []string{"--restart-before", "0s"}, "--restart-before must be above 0"},
		{"min interval zero", nil, []string{"--restart-min-interval", "0s"}, "--restart-min-interval must be at least 1h0m0s (got 0s)"},
		{"min interval below the floor", nil, []string{"--restart-min-interval", "59m"}, "--restart-min-interval must be at least"},
		{"min interval from the environment", []string{"CERTGUARD_RESTART_MIN_INTERVAL=10s"}, nil, "--restart-min-interval must be at least"},
		{"defaults", nil, nil, ""},
		{"at the floor, just below renew-before", nil, []string{"--restart-min-interval", "1h", "--restart-before", "119d"}, ""},
	}
	watchStartup(t, "--restart-", cases)
}

// TestWatchProbeFlags: --probe-apiserver and --probe-syncer take host:port or off (also from
// CERTGUARD_PROBE_*), and anything else ends `certguard watch` at start-up with one line and
// exit 2. Accepted settings go on to the missing kubeconfig this test gives them.
func TestWatchProbeFlags(t *testing.T) {
	cases := []startupCase{
		{"not host:port", nil, []string{"--probe-syncer", "bogus"}, `--probe-syncer: want host:port or off (got "bogus")`},
		{"from the environment", []string{"CERTGUARD_PROBE_APISERVER=localhost"}, nil, "--probe-apiserver: want host:port or off"},
		{"off", nil, []string{"--probe-apiserver", "off", "--probe-syncer", ""}, ""},
		{"off from the environment", []string{"CERTGUARD_PROBE_SYNCER=off"}, nil, ""},
		{"another port", nil, []string{"--probe-syncer", "127.0.0.1:9443"}, ""},
		{"IPv6 loopback", nil, []string{"--probe-apiserver", "[::1]:6443"}, ""},
		{"a port out of range", nil, []string{"--probe-apiserver", "127.0.0.1:65536"}, `--probe-apiserver: want host:port or off (got "127.0.0.1:65536")`},
		{"a named port", nil, []string{"--probe-syncer", "127.0.0.1:https"}, "--probe-syncer: want host:port or off"},
		{"no host", []string{"CERTGUARD_PROBE_SYNCER=:8443"}, nil, "--probe-syncer: want host:port or off"},
	}
	watchStartup(t, "--probe-", cases)
}

// startupCase is a start of `certguard watch` with args and env: refused with want in one line
// and exit 2, or ("" want) accepted.
type startupCase struct {
	name string
	env  []string
	args []string
	want string // "" = accepted
}

// watchStartup runs each case against a missing kubeconfig: a refused one ends with exit 2 and
// one line; an accepted one says nothing of the flags (prefix) and goes on to the kubeconfig,
// which proves the check let it through.
func watchStartup(t *testing.T, prefix string, cases []startupCase) {
	t.Helper()
	missing := filepath.Join(t.TempDir(), "no-kubeconfig")
	base := []string{"watch", "--pki-dir", t.TempDir(), "--kubeconfig", missing, "--vcluster-name", "vc", "--namespace", "ns", "--pod-name", "vc-0"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runBin(t, c.env, append(append([]string{}, base...), c.args...)...)
			if c.want == "" {
				if strings.Contains(stderr, prefix) || !strings.Contains(stderr, missing) {
					t.Fatalf("valid settings refused or not reaching the kubeconfig: exit %d: %s", code, stderr)
				}
				return
			}
			if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("exit %d, want 2; stderr %q should be one line with %q", code, stderr, c.want)
			}
		})
	}
}
