package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestWatchProbeFlags: --probe-apiserver and --probe-syncer take host:port or off (also from
// CERTGUARD_PROBE_*), and anything else ends `certguard watch` at start-up with one line and
// exit 2. Accepted settings go on to the missing kubeconfig this test gives them.
func TestWatchProbeFlags(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-kubeconfig")
	base := []string{"watch", "--pki-dir", t.TempDir(), "--kubeconfig", missing, "--vcluster-name", "vc", "--namespace", "ns", "--pod-name", "vc-0"}
	cases := []struct {
		name string
		env  []string
		args []string
		want string // "" = accepted
	}{
		{"not host:port", nil, []string{"--probe-syncer", "bogus"}, `--probe-syncer: want host:port or off (got "bogus")`},
		{"from the environment", []string{"CERTGUARD_PROBE_APISERVER=localhost"}, nil, "--probe-apiserver: want host:port or off"},
		{"off", nil, []string{"--probe-apiserver", "off", "--probe-syncer", ""}, ""},
		{"off from the environment", []string{"CERTGUARD_PROBE_SYNCER=off"}, nil, ""},
		{"another port", nil, []string{"--probe-syncer", "127.0.0.1:9443"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runBin(t, c.env, append(append([]string{}, base...), c.args...)...)
			if c.want == "" {
				if strings.Contains(stderr, "--probe-") || !strings.Contains(stderr, missing) {
					t.Fatalf("valid probe settings refused or not reaching the kubeconfig: exit %d: %s", code, stderr)
				}
				return
			}
			if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("exit %d, want 2; stderr %q should be one line with %q", code, stderr, c.want)
			}
		})
	}
}
