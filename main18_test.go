package main

// Issue 18 §1: never block a start for a warning. Each test runs the real binary against the real
// kube-apiserver; the node's clock is put off the API server's by a proxy that shifts the Date
// header of every answer, which is where certguard reads the server's time.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// skewedKubeconfig writes a kubeconfig whose API server answers through a proxy that moves its
// Date header by offset: offset -1h is a node whose clock runs an hour ahead of the server's.
// The proxy talks to the apiserver as a system:masters user of its own.
func skewedKubeconfig(t *testing.T, offset time.Duration) string {
	t.Helper()
	cfg, err := kenv.User(fmt.Sprintf("skew-%d", time.Now().UnixNano()), "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	host := cfg.Host
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	u, err := url.Parse(host)
	if err != nil {
		t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = rt
	p.ModifyResponse = func(r *http.Response) error {
		if d, err := http.ParseTime(r.Header.Get("Date")); err == nil {
			r.Header.Set("Date", d.Add(offset).UTC().Format(http.TimeFormat))
		}
		return nil
	}
	ts := httptest.NewTLSServer(p)
	t.Cleanup(ts.Close)
	kc := filepath.Join(t.TempDir(), "skewed.kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: '"+ts.URL+"', insecure-skip-tls-verify: true}}]\n"+
		"users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return kc
}

// repairHeld runs `repair -o json` with a termination log and returns the exit code, the
// outcome's plan and what the termination log holds.
func (v *vc) repairWithLog(extra ...string) (code int, plan pki.Plan, termination string, stderr string) {
	v.t.Helper()
	termLog := filepath.Join(v.t.TempDir(), "termination-log")
	os.WriteFile(termLog, nil, 0o644)
	args := append([]string{"repair", "-o", "json", "--pki-dir", v.dir, "--namespace", v.ns, "--kubeconfig", v.kubeconfig, "--pod-name", "vc-0"}, extra...)
	code, stdout, stderr := runBin(v.t, []string{"CERTGUARD_TERMINATION_LOG=" + termLog}, args...)
	var out struct{ Plan pki.Plan }
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		v.t.Fatalf("exit %d, stdout is no outcome (%v): %s\n%s", code, err, stdout, stderr)
	}
	b, _ := os.ReadFile(termLog)
	return code, out.Plan, string(b), stderr
}

func (v *vc) warningEvents(reason string) int {
	v.t.Helper()
	evs, err := kenv.Client.CoreV1().Events(v.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		v.t.Fatal(err)
	}
	n := 0
	for _, e := range evs.Items {
		if e.Type == "Warning" && e.Reason == reason && e.InvolvedObject.Name == "vc-0" {
			n++
		}
	}
	return n
}

// assertHeld checks the loud side of a start that goes on: exit 0, nothing changed, the codes
// in the JSON, a Warning Event, and the termination message.
func (v *vc) assertHeld(code int, plan pki.Plan, termination, stderr string, cause pki.Code) {
	v.t.Helper()
	if code != 0 || plan.Decision != pki.DecideNothing {
		v.t.Fatalf("exit %d, decision %s; want 0 and nothing: %s", code, plan.Decision, stderr)
	}
	for _, c := range []pki.Code{pki.CodeRepairHeld, cause} {
		if _, ok := plan.Has(c); !ok {
			v.t.Errorf("no finding %s: why %q, warnings %q", c, plan.Why, plan.Warnings)
		}
	}
	if !strings.Contains(termination, "warning:") || !strings.Contains(termination, "held back") {
		v.t.Errorf("termination log %q does not hold the warning", termination)
	}
	if n := v.warningEvents("CertificateNeedsAttention"); n != 1 {
		v.t.Errorf("%d Warning Events CertificateNeedsAttention on vc-0, want 1", n)
	}
	v.assertUnchanged()
}

// TestDueLeafOnASkewedNodeStarts: a leaf due in 65 days and a node an hour off the API server's
// clock made repair refuse (exit 3): the pod never started, though k0s would have. Now the start
// goes on, loudly, and check exits 4.
func TestDueLeafOnASkewedNodeStarts(t *testing.T) {
	now := time.Now()
	for _, offset := range []time.Duration{-time.Hour, time.Hour} {
		t.Run(fmt.Sprintf("server %s", offset), func(t *testing.T) {
			v := newVC(t, pkigen.Options{Now: now, K0sIssued: now.Add(-300 * day)}, true)
			v.kubeconfig = skewedKubeconfig(t, offset)
			code, plan, termination, stderr := v.repairWithLog()
			v.assertHeld(code, plan, termination, stderr, pki.CodeClockSkew)
			if code, stdout, stderr := v.run("check"); code != 4 {
				t.Errorf("check: exit %d, want 4\n%s%s", code, stdout, stderr)
			}
		})
	}
}

// TestExpiredLeafOnASkewedNodeRefuses: leaves expired 35 days ago by both clocks fail the start
// anyway; acting on a skewed clock is unsafe, so that start is refused (exit 3), as before.
func TestExpiredLeafOnASkewedNodeRefuses(t *testing.T) {
	v := newVC(t, expired(time.Now()), true)
	v.kubeconfig = skewedKubeconfig(t, -time.Hour)
	code, plan, termination, stderr := v.repairWithLog()
	if code != 3 || plan.Decision != pki.DecideRefuse || plan.Refusal == nil || plan.Refusal.Code != pki.CodeClockSkew {
		t.Fatalf("exit %d, decision %s, refusal %v: %s", code, plan.Decision, plan.Refusal, stderr)
	}
	if !strings.Contains(termination, "refused: clock skew") {
		t.Errorf("termination log %q does not hold the refusal", termination)
	}
	v.assertUnchanged()
}

// TestSecretNearTheLimitIsRepaired: a needed leaf repair of a 0.9 MiB Secret wrote its backup
// (secret.json over 1 MiB), then could not read it back: exit 1 at every start, each leaving
// another backup holding every private key.
func TestSecretNearTheLimitIsRepaired(t *testing.T) {
	v := newVC(t, expired(time.Now()), true)
	ctx := context.Background()
	s, err := kenv.Client.CoreV1().Secrets(v.ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 900<<10)
	for i := range big {
		big[i] = byte(i*7919 + i/251)
	}
	s.Data["extra.bin"] = big
	if _, err := kenv.Client.CoreV1().Secrets(v.ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	v.data = v.secret()
	v.repairCodes(pki.DecideLeaves, true, pki.CodeLeaf)
	saved, _ := filepath.Glob(filepath.Join(v.dir+".old", "*", "secret.json"))
	if len(saved) != 1 {
		t.Fatalf("backups with secret.json: %v", saved)
	}
	if fi, err := os.Stat(saved[0]); err != nil || fi.Size() <= 1<<20 {
		t.Fatalf("secret.json %v %v: want it above 1 MiB for this test to mean anything", fi, err)
	}
	t.Logf("a Secret of %d bytes of data: secret.json %d bytes", len(big), func() int64 { fi, _ := os.Stat(saved[0]); return fi.Size() }())
	got := v.secret()
	if got["server.crt"] != nil || len(got["extra.bin"]) != len(big) {
		t.Error("want the leaves gone from the Secret and its other key kept")
	}
}

// TestMissingSecretIsNamed: with the leaves expired and no Secret under the name certguard
// derived (a typo in --vcluster-name), the warning names the Secret it looked for, in a field.
func TestMissingSecretIsNamed(t *testing.T) {
	v := newVC(t, expired(time.Now()), true)
	code, stdout, stderr := v.run("repair", "--dry-run", "-o", "json", "--vcluster-name", "vcc")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var out struct {
		Plan struct {
			Warnings []map[string]any `json:"warnings"`
		} `json:"plan"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(out.Plan.Warnings, func(w map[string]any) bool { return w["code"] == string(pki.CodeNoSecret) })
	if i < 0 {
		t.Fatalf("no %s warning: %v", pki.CodeNoSecret, out.Plan.Warnings)
	}
	ref, _ := out.Plan.Warnings[i]["secret"].(map[string]any)
	if ref["name"] != "vcc-certs" || ref["namespace"] != v.ns {
		t.Errorf("the warning names Secret %v, want %s/vcc-certs", out.Plan.Warnings[i]["secret"], v.ns)
	}
}
