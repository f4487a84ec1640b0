package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fleetUserWith is a user bound to a ClusterRole with exactly these verbs on secrets, and list
// and watch on StatefulSets (what fleet serve needs besides).
func fleetUserWith(t testing.TB, verbs ...string) (string, string) {
	t.Helper()
	name := userWithRules(t, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: verbs},
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"list", "watch"}}}, "", nil)
	kc, err := kenv.Kubeconfig(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return name, kc
}

// served is a running `certguard fleet serve`.
type served struct {
	t      testing.TB
	cmd    *exec.Cmd
	addr   string
	done   chan error
	mu     sync.Mutex
	stderr strings.Builder
}

var servingLine = regexp.MustCompile(`msg=serving listen=(\S+)`)

// startServe starts `certguard fleet serve --listen 127.0.0.1:0` and waits for the address it
// logs (the port is the kernel's choice, so no two tests race for one).
func startServe(t testing.TB, args ...string) *served {
	t.Helper()
	return startServeEnv(t, nil, args...)
}

// startServeEnv is startServe with variables added to the environment (GOMEMLIMIT=…).
func startServeEnv(t testing.TB, env []string, args ...string) *served {
	t.Helper()
	s := &served{t: t, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, append([]string{"fleet", "serve", "--listen", "127.0.0.1:0"}, args...)...)
	if env != nil {
		s.cmd.Env = append(os.Environ(), env...)
	}
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		s.done <- s.cmd.Wait()
	}()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
		}
	})
	select {
	case s.addr = <-addr:
	case err := <-s.done:
		t.Fatalf("fleet serve exited: %v\n%s", err, s.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("fleet serve logged no address:\n%s", s.log())
	}
	return s
}

func (s *served) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

func (s *served) get(path string) (int, string) {
	resp, err := http.Get("http://" + s.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond every 50 ms until it holds, for at most 10 s: a change must reach a
// scrape within a few seconds.
func (s *served) eventually(what string, cond func(metrics string) bool) {
	s.t.Helper()
	var last string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		if code, body := s.get("/metrics"); code == http.StatusOK {
			if last = body; cond(body) {
				return
			}
		}
		select {
		case err := <-s.done:
			s.t.Fatalf("fleet serve exited: %v\n%s", err, s.log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.t.Fatalf("%s: not seen within 10 s; last scrape:\n%s\nlog:\n%s", what, grepLines(last, "certguard_vcluster|secret_key=\"server.crt\""), s.log())
}

func (s *served) stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		return err
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("did not stop on SIGTERM")
	}
}

func grepLines(s, re string) string {
	r := regexp.MustCompile(re)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if r.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// unixValue is how the text exposition writes a timestamp gauge (1.767323045e+09), as a regexp.
func unixValue(t time.Time) string {
	return regexp.QuoteMeta(strconv.FormatFloat(float64(t.Unix()), 'g', -1, 64))
}

func has(metrics, re string) bool { return regexp.MustCompile(`(?m)^` + re + `$`).MatchString(metrics) }

// leavesExpiringAt is a vcluster v0.25 PKI whose k0s leaves expire at exactly notAfter (pkigen
// back-dates NotBefore by pkigen.Backdate and adds the lifetime to it, as cfssl does).
func leavesExpiringAt(t testing.TB, notAfter time.Time) map[string][]byte {
	t.Helper()
	p, err := pkigen.Generate(pkigen.Options{Now: time.Now(), K0sIssued: notAfter.Add(-pkigen.Year + pkigen.Backdate), K0sLifetime: pkigen.Year})
	if err != nil {
		t.Fatal(err)
	}
	return p.SecretData()
}

// TestFleetServe follows Secrets being created, updated and deleted on the real apiserver, with a
// user that may only list and watch Secrets (the chart's fleet ClusterRole).
func TestFleetServe(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "serve")
	now := time.Now()
	healthyAt := now.Add(200 * day).Truncate(time.Second)
	putSecret(t, ns, "healthy-certs", nil, leavesExpiringAt(t, healthyAt)) // v0.19: no labels
	putSecret(t, ns, "web-certs", nil, map[string][]byte{"tls.crt": []byte("x")})
	putSecret(t, ns, "plain", nil, map[string][]byte{"ca.crt": []byte("x"), "apiserver.crt": []byte("y")})
	// vcluster's name and keys, but not its type: the field selector type=Opaque leaves it out.
	tlsData := leavesExpiringAt(t, healthyAt)
	tlsData["tls.crt"], tlsData["tls.key"] = tlsData["server.crt"], tlsData["server.key"]
	if _, err := kenv.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls-certs"},
		Type: corev1.SecretTypeTLS, Data: tlsData}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	user, kc := fleetUserWith(t, "list", "watch")
	s := startServe(t, "--kubeconfig", kc, "-n", ns)
	q := `\{secret_namespace="` + ns + `",`
	s.eventually("healthy OK", func(m string) bool {
		return has(m, `certguard_vcluster_status`+q+`status="OK",vcluster="healthy"\} 1`) &&
			has(m, `certguard_vcluster_leaf_expiry_timestamp_seconds`+q+`vcluster="healthy"\} `+unixValue(healthyAt)) &&
			has(m, `x509_cert_not_after\{.*secret_key="server\.crt",secret_name="healthy-certs",secret_namespace="`+ns+`".*\} \S+`)
	})
	if code, _ := s.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d after the first scrape showed the Secrets", code)
	}
	_, m := s.get("/metrics")
	for _, not := range []string{"web-certs", `"web"`, `secret_name="plain"`, "tls-certs", `vcluster="tls"`} {
		if strings.Contains(m, not) {
			t.Errorf("an unrelated Secret shows in the metrics (%s):\n%s", not, grepLines(m, not))
		}
	}
	if !has(m, `certguard_fleet_vclusters 1`) {
		t.Errorf("certguard_fleet_vclusters is not 1:\n%s", grepLines(m, "certguard_fleet"))
	}

	// Created: a v0.24+ Secret whose leaves are due within --renew-before (120d).
	dueAt := now.Add(50 * day).Truncate(time.Second)
	putSecret(t, ns, "due-certs", map[string]string{"app": "vcluster"}, leavesExpiringAt(t, dueAt))
	s.eventually("due DUE", func(m string) bool {
		return has(m, `certguard_vcluster_status`+q+`status="DUE",vcluster="due"\} 1`) &&
			has(m, `certguard_vcluster_status`+q+`status="OK",vcluster="due"\} 0`)
	})

	// Updated: healthy's leaves replaced by expired ones, and a repair recorded.
	expiredAt := now.Add(-3 * day).Truncate(time.Second)
	sec, err := kenv.Client.CoreV1().Secrets(ns).Get(ctx, "healthy-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data = leavesExpiringAt(t, expiredAt)
	sec.Annotations = map[string]string{pki.LastRepairAnnotation: "2026-01-02T03:04:05Z leaves"}
	if _, err := kenv.Client.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.eventually("healthy EXPIRED", func(m string) bool {
		return has(m, `certguard_vcluster_status`+q+`status="EXPIRED",vcluster="healthy"\} 1`) &&
			has(m, `certguard_vcluster_status`+q+`status="OK",vcluster="healthy"\} 0`) &&
			has(m, `certguard_vcluster_leaf_expiry_timestamp_seconds`+q+`vcluster="healthy"\} `+unixValue(expiredAt)) &&
			has(m, `certguard_vcluster_last_repair_timestamp_seconds`+q+`vcluster="healthy"\} 1\.767323045e\+09`) &&
			has(m, `x509_cert_expired\{.*secret_key="server\.crt",secret_name="healthy-certs".*\} 1`)
	})

	// Deleted: every series of the vcluster goes.
	if err := kenv.Client.CoreV1().Secrets(ns).Delete(ctx, "due-certs", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s.eventually("due gone", func(m string) bool {
		return !strings.Contains(m, `vcluster="due"`) && !strings.Contains(m, `secret_name="due-certs"`) && has(m, `certguard_fleet_vclusters 1`)
	})

	code, body := s.get("/plan")
	var p struct {
		Vclusters []struct{ Release, Status string }
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &p) != nil || len(p.Vclusters) != 1 || p.Vclusters[0].Release != "healthy" || p.Vclusters[0].Status != "EXPIRED" {
		t.Errorf("/plan: %d\n%s", code, body)
	}
	if err := s.stop(); err != nil {
		t.Errorf("fleet serve on SIGTERM: %v\n%s", err, s.log())
	}
	// One LIST of Secrets and one of StatefulSets, then WATCHes: never a GET per Secret.
	reqs, _ := kenv.Requests(user)
	lists := map[string]int{}
	for _, r := range reqs {
		if r.Verb != "list" && r.Verb != "watch" {
			t.Errorf("fleet serve made a %s request (%s)", r.Verb, r.RequestURI)
		}
		if r.Verb == "list" {
			path, _, _ := strings.Cut(r.RequestURI, "?")
			lists[path[strings.LastIndex(path, "/")+1:]]++
		}
	}
	if lists["secrets"] != 1 || lists["statefulsets"] != 1 || len(lists) != 2 {
		t.Errorf("LIST requests %v, want one of secrets and one of statefulsets (then WATCHes)", lists)
	}
}

// TestFleetServeReadyMeansComplete: /readyz says ready only once every Secret of the first LIST
// has reached the state, so the first scrape after it holds them all. (The informer's own
// HasSynced is true before its handler has seen them; with 300 Secrets that was visible.)
func TestFleetServeReadyMeansComplete(t *testing.T) {
	ns, _ := kenv.Namespace(context.Background(), "ready")
	data := leavesExpiringAt(t, time.Now().Add(200*day))
	for i := range 300 {
		putSecret(t, ns, fmt.Sprintf("vc%03d-certs", i), nil, data)
	}
	_, kc := fleetUserWith(t, "list", "watch")
	s := startServe(t, "--kubeconfig", kc, "-n", ns)
	for end := time.Now().Add(30 * time.Second); ; {
		if code, _ := s.get("/readyz"); code == http.StatusOK {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("not ready after 30 s:\n%s", s.log())
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	if _, m := s.get("/metrics"); !has(m, `certguard_fleet_vclusters 300`) {
		t.Fatalf("ready, but the first scrape has %s", grepLines(m, "^certguard_fleet_vclusters"))
	}
}

// TestFleetServeWithoutWatch: a ClusterRole with list but not watch ends fleet serve with exit 1
// and one line that names the refused verb.
func TestFleetServeWithoutWatch(t *testing.T) {
	_, kc := fleetUserWith(t, "list")
	c := exec.Command(bin, "fleet", "serve", "--listen", "127.0.0.1:0", "--kubeconfig", kc)
	var stderr strings.Builder
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.Process.Kill()
		<-done
		t.Fatalf("fleet serve kept running without watch:\n%s", stderr.String())
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !strings.Contains(l, "level=INFO") {
			lines = append(lines, l)
		}
	}
	if c.ProcessState.ExitCode() != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "certguard: ") ||
		!strings.Contains(lines[0], `cannot watch resource "secrets"`) || !strings.Contains(lines[0], `grant RBAC "watch"`) {
		t.Fatalf("exit %d, want 1 with one error line naming watch:\n%s", c.ProcessState.ExitCode(), stderr.String())
	}
}

// TestFleetPlan: five Secrets whose k0s leaves expire at instants chosen around a Saturday S, a
// window "Sat 02:00-04:00" UTC and --renew-before 7d. The bookings below are worked out by hand:
//
//	alpha   leaves expire S+7d+1h    due S+1h    first opening at/after: S+2h
//	charlie leaves expire S+7d+1h30  due S+1h30  S+2h; with --max-concurrent 1 taken by alpha: S+7d+2h
//	bravo   leaves expire S+7d+3h    due S+3h    (inside S's window, after its opening) S+7d+2h;
//	                                             with --max-concurrent 1 taken by charlie: S+14d+2h
//	delta   no k0s leaves: nothing to book
func TestFleetPlan(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "plan")
	now := time.Now().UTC()
	// S: the first Saturday 00:00 UTC at least 14 days from now, so every due time is ahead.
	S := time.Date(now.Year(), now.Month(), now.Day()+14, 0, 0, 0, 0, time.UTC)
	for S.Weekday() != time.Saturday {
		S = S.AddDate(0, 0, 1)
	}
	h := time.Hour
	putSecret(t, ns, "alpha-certs", nil, leavesExpiringAt(t, S.Add(7*day+h)))
	putSecret(t, ns, "bravo-certs", nil, leavesExpiringAt(t, S.Add(7*day+3*h)))
	putSecret(t, ns, "charlie-certs", map[string]string{"app": "vcluster"}, leavesExpiringAt(t, S.Add(7*day+h+30*time.Minute)))
	delta := leavesExpiringAt(t, S)
	for _, k := range pki.K0sLeafFiles {
		delete(delta, pki.SecretKey(k))
	}
	putSecret(t, ns, "delta-certs", nil, delta)
	putSecret(t, ns, "web-certs", nil, map[string][]byte{"tls.crt": []byte("x")})

	// list on secrets only: plan is one paginated LIST, like fleet, and without StatefulSets to
	// read it books every due vcluster (TestFleetPlanReadsStatefulSets has them).
	kc, err := kenv.Kubeconfig(t.TempDir(), userWithRules(t, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}}, "", nil))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Release string
		Due     time.Time
		Window  time.Time
		Spilled int
	}
	for _, c := range []struct {
		max  string
		want []row
	}{
		{"1", []row{{"alpha", S.Add(h), S.Add(2 * h), 0}, {"charlie", S.Add(h + 30*time.Minute), S.Add(7*day + 2*h), 1},
			{"bravo", S.Add(3 * h), S.Add(14*day + 2*h), 1}, {"delta", time.Time{}, time.Time{}, 0}}},
		{"2", []row{{"alpha", S.Add(h), S.Add(2 * h), 0}, {"charlie", S.Add(h + 30*time.Minute), S.Add(2 * h), 0},
			{"bravo", S.Add(3 * h), S.Add(7*day + 2*h), 0}, {"delta", time.Time{}, time.Time{}, 0}}},
	} {
		code, stdout, stderr := runBin(t, nil, "fleet", "plan", "--kubeconfig", kc, "-n", ns, "-o", "json", "--renew-before", "7d",
			"--restart-window", "Sat 02:00-04:00", "--restart-timezone", "UTC", "--max-concurrent", c.max, "--jitter", "0")
		if code != 0 {
			t.Fatalf("--max-concurrent %s: exit %d: %s", c.max, code, stderr)
		}
		var p struct{ Vclusters []row }
		if err := json.Unmarshal([]byte(stdout), &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Vclusters) != len(c.want) {
			t.Fatalf("--max-concurrent %s: %d rows, want %d:\n%s", c.max, len(p.Vclusters), len(c.want), stdout)
		}
		for i, w := range c.want {
			g := p.Vclusters[i]
			if g.Release != w.Release || !g.Due.Equal(w.Due) || !g.Window.Equal(w.Window) || g.Spilled != w.Spilled {
				t.Errorf("--max-concurrent %s, row %d: got %s due %s window %s spilled %d, want %s due %s window %s spilled %d",
					c.max, i, g.Release, g.Due, g.Window, g.Spilled, w.Release, w.Due, w.Window, w.Spilled)
			}
		}
	}
	// The table, with the settings from the environment.
	code, stdout, stderr := runBin(t, []string{"CERTGUARD_RESTART_WINDOW=Sat 02:00-04:00", "CERTGUARD_MAX_CONCURRENT=2", "CERTGUARD_JITTER=0"},
		"fleet", "plan", "--kubeconfig", kc, "-n", ns, "--renew-before", "7d")
	if code != 0 || !strings.HasPrefix(stdout, "NAMESPACE") || !strings.Contains(stdout, S.Add(2*h).Format("2006-01-02 15:04 UTC")) ||
		!strings.Contains(stdout, "no k0s leaf to renew") {
		t.Fatalf("table from the environment: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := runBin(t, nil, "fleet", "plan", "--kubeconfig", kc, "--max-concurrent", "0"); code != 2 || !strings.Contains(stderr, "--max-concurrent") {
		t.Errorf("--max-concurrent 0: exit %d %s", code, stderr)
	}
	if code, _, stderr := runBin(t, nil, "fleet", "serve", "--kubeconfig", kc, "--restart-window", "Caturday 02:00-04:00"); code != 2 || !strings.Contains(stderr, "--restart-window") {
		t.Errorf("bad window: exit %d %s", code, stderr)
	}
}

// TestBinaryHasNoTypedClientset: the binary stays on the dynamic client. client-go's typed
// clientset (or client-go/informers, which dynamicinformer imports and which imports it) doubled
// the stripped binary, 15.5 → 31.0 MB, when fleet serve first used dynamicinformer.
func TestBinaryHasNoTypedClientset(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "k8s.io/client-go/kubernetes" || p == "k8s.io/client-go/informers" || p == "k8s.io/client-go/dynamic/dynamicinformer" {
			t.Errorf("the certguard binary imports %s", p)
		}
	}
}
