package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	fleetsvc "github.com/certguard/certguard/fleet"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fleetUser is a user that may only list Secrets cluster-wide: what `certguard fleet` needs.
func fleetUser(t testing.TB) (string, string) {
	t.Helper()
	return fleetUserWith(t, "list")
}

func putSecret(t testing.TB, ns, name string, labels map[string]string, data map[string][]byte) {
	t.Helper()
	if _, err := kenv.Client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Data: data}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestFleet(t *testing.T) {
	now := time.Now()
	ns, _ := kenv.Namespace(context.Background(), "fleet")
	gen := func(o pkigen.Options) map[string][]byte {
		o.Now = now
		p, err := pkigen.Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		return p.SecretData()
	}
	nonK0s := gen(pkigen.Options{})
	for _, k := range pki.K0sLeafFiles {
		delete(nonK0s, k)
	}
	garbage := gen(pkigen.Options{})
	garbage["ca.crt"] = []byte("not a certificate")
	putSecret(t, ns, "healthy-certs", nil, gen(pkigen.Options{}))                                                            // v0.19: no labels
	putSecret(t, ns, "due-certs", map[string]string{"app": "vcluster"}, gen(pkigen.Options{K0sIssued: now.Add(-300 * day)})) // v0.24+
	putSecret(t, ns, "expired-certs", nil, gen(pkigen.Options{K0sIssued: now.Add(-400 * day)}))
	putSecret(t, ns, "k8s-certs", nil, nonK0s)
	putSecret(t, ns, "garbage-certs", map[string]string{"app": "vcluster"}, garbage)
	putSecret(t, ns, "web-certs", nil, map[string][]byte{"tls.crt": []byte("x")}) // someone else's
	putSecret(t, ns, "plain", nil, map[string][]byte{"ca.crt": []byte("x"), "apiserver.crt": []byte("y")})

	user, kc := fleetUser(t)
	code, stdout, stderr := runBin(t, nil, "fleet", "--kubeconfig", kc, "-n", ns, "-o", "json", "--page-size", "3")
	if code != 4 {
		t.Fatalf("exit %d, want 4 (some are due): %s", code, stderr)
	}
	var rows []fleetsvc.Row
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Release+"="+string(r.Status))
	}
	want := []string{"expired=EXPIRED", "garbage=UNREADABLE", "due=DUE", "healthy=OK", "k8s=NO-K0S-CERTS"}
	if !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	if rows[0].LeafFile == "" || rows[0].CAExpiry.IsZero() || rows[3].Distro != "k0s" || rows[4].Distro != "k8s/k3s" {
		t.Errorf("row details: %+v", rows)
	}
	reqs, _ := kenv.Requests(user)
	for _, r := range reqs {
		if r.Verb != "list" || r.ObjectRef.Resource != "secrets" {
			t.Errorf("fleet made a %s of %s; it must only LIST", r.Verb, r.ObjectRef.Resource)
		}
	}
	if len(reqs) != 3 { // 7 Opaque Secrets, 3 a page
		t.Errorf("%d LIST requests for 7 Secrets at 3 a page, want 3", len(reqs))
	}
	code, stdout, _ = runBin(t, nil, "fleet", "--kubeconfig", kc, "-n", ns)
	if code != 4 || !strings.HasPrefix(stdout, "NAMESPACE") || !strings.Contains(stdout, "NO-K0S-CERTS") {
		t.Fatalf("table: exit %d\n%s", code, stdout)
	}
	// A repaired vcluster shows when it was repaired.
	v := newVC(t, expired(now), true)
	if code, _, stderr := v.run("repair"); code != 0 {
		t.Fatal(stderr)
	}
	code, stdout, _ = runBin(t, nil, "fleet", "--kubeconfig", kc, "-n", v.ns, "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"lastRepair": "`) || !strings.Contains(stdout, "NO-K0S-CERTS") {
		// Right after a repair the Secret has no k0s keys until k0s boots and vcluster adds them.
		t.Fatalf("after repair: exit %d\n%s", code, stdout)
	}
}

// BenchmarkFleet1000 creates 1,000 vcluster Secrets on the real apiserver and runs
// `certguard fleet` over them, reporting wall time and peak RSS of the process.
// Run: go test -run '^$' -bench Fleet1000 -benchtime 5x .
func BenchmarkFleet1000(b *testing.B) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "fleet1000")
	p, err := pkigen.Generate(pkigen.Options{K0sIssued: time.Now().Add(-300 * day)})
	if err != nil {
		b.Fatal(err)
	}
	data := p.SecretData()
	for i := range 1000 {
		putSecret(b, ns, fmt.Sprintf("vc%04d-certs", i), map[string]string{"app": "vcluster"}, data)
	}
	_, kc := fleetUser(b)
	var maxRSS int64
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		c := exec.Command(bin, "fleet", "--kubeconfig", kc, "-n", ns, "-o", "json")
		out, err := c.Output()
		if c.ProcessState.ExitCode() != 4 { // all 1,000 are due
			b.Fatalf("exit %d: %v", c.ProcessState.ExitCode(), err)
		}
		if n := strings.Count(string(out), `"release"`); n != 1000 {
			b.Fatalf("%d rows", n)
		}
		maxRSS = max(maxRSS, c.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
		cpu += c.ProcessState.UserTime() + c.ProcessState.SystemTime()
	}
	b.ReportMetric(float64(maxRSS)/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "certguard-cpu-ms/op")
}
