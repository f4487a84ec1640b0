package charts_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// TestRBAC proves on the real apiserver, with RBAC on, that vcluster's own Role plus the add-on
// chart's Role are what certguard needs, and what happens with less.
//
// certguard runs as the vcluster service account: the test's client certificate carries its
// user name system:serviceaccount:<ns>:vc-my-vcluster, which RBAC matches against the
// ServiceAccount subjects of vcluster's RoleBinding and of the add-on chart's RoleBinding, exactly
// as for a pod's token.
func TestRBAC(t *testing.T) {
	for _, c := range []struct {
		name           string
		role           string // vcluster's Role, from testdata
		addon          bool   // the add-on chart installed
		noSecretUpdate bool   // vcluster's Role without update on secrets
	}{
		{"v0.25 Role + add-on", "vcluster-v0.25-role.yaml", true, false},
		{"v0.19 Role + add-on", "vcluster-v0.19-role.yaml", true, false},
		{"v0.25 Role only", "vcluster-v0.25-role.yaml", false, false},
		{"v0.25 Role without secrets update + add-on", "vcluster-v0.25-role.yaml", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			ns := namespace(t, "rbac")
			const sa, pod = "vc-my-vcluster", "my-vcluster-0"
			user := "system:serviceaccount:" + ns + ":" + sa
			groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}

			// vcluster's Role and RoleBinding, as its chart creates them.
			role := loadRole(t, c.role)
			role.Namespace = ns
			if c.noSecretUpdate {
				role.Rules = withoutVerb(role.Rules, "secrets", "update")
			}
			if _, err := env.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err := env.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: ns},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// The add-on chart, installed for real (helm template | kubectl apply).
			if c.addon {
				r := mustRun(t, nil, helmBin, "template", "my-vcluster-certguard", chartDir, "-n", ns)
				p := filepath.Join(t.TempDir(), "addon.yaml")
				if err := os.WriteFile(p, []byte(r.stdout), 0o600); err != nil {
					t.Fatal(err)
				}
				r = mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, kubectlBin, "apply", "-n", ns, "-f", p)
				if !strings.Contains(r.stdout, "role.rbac.authorization.k8s.io/my-vcluster-certguard created") ||
					!strings.Contains(r.stdout, "rolebinding.rbac.authorization.k8s.io/my-vcluster-certguard created") {
					t.Fatalf("kubectl apply of the add-on chart:\n%s", r.stdout)
				}
			}

			// What the service account may do, asked as itself: what repair and watch use
			// (secrets get/update, pods get/delete, events create), and nothing more on events.
			cfg, err := env.User(user, groups...)
			if err != nil {
				t.Fatal(err)
			}
			self := kubernetes.NewForConfigOrDie(cfg)
			for _, a := range []struct {
				verb, resource, name string
				want                 bool
			}{
				{"get", "secrets", "my-vcluster-certs", true},
				{"list", "secrets", "", true},  // certguard watch: single-object LIST+WATCH
				{"watch", "secrets", "", true}, // of the Secret
				{"update", "secrets", "my-vcluster-certs", !c.noSecretUpdate},
				{"delete", "secrets", "my-vcluster-certs", true},
				{"get", "pods", pod, true},
				{"delete", "pods", pod, true}, // certguard watch restarts the pod
				{"create", "events", "", c.addon},
				{"patch", "events", "", false},
				{"delete", "events", "", false},
			} {
				rev, err := self.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
					Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
						Namespace: ns, Verb: a.verb, Resource: a.resource, Name: a.name,
					}},
				}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if rev.Status.Allowed != a.want {
					t.Errorf("%s may %s %s: %v, want %v", user, a.verb, a.resource, rev.Status.Allowed, a.want)
				}
			}

			dir, data := expiredPKI(t, ns, "my-vcluster")
			before := manifest(t, dir)
			kc, err := env.Kubeconfig(t.TempDir(), user, groups...)
			if err != nil {
				t.Fatal(err)
			}

			// certguard watch, with the sidecar's args from the values file, on the expired PKI.
			checkWatch(t, kc, ns, dir, pod, c.addon)
			if after := manifest(t, dir); !reflect.DeepEqual(before, after) {
				t.Error("certguard watch changed the pki dir (its data mount is read-only in the values files)")
			}

			// certguard repair, with the init container's args from the values file.
			repairEntry, _, _, _ := loadValues(t, valuesFiles[0])
			args := append(strs(repairEntry, "args"), "--kubeconfig="+kc, "--namespace="+ns, "--pki-dir="+dir, "--pod-name="+pod)
			r := runMeasured(t, nil, certguardBin, args...)
			t.Logf("certguard repair: exit %d in %v, peak RSS %.1f MiB", r.code, r.took.Round(time.Millisecond), float64(r.maxRSS)/(1<<20))
			if strings.Contains(r.stdout+r.stderr, "PRIVATE KEY") {
				t.Error("certguard printed a private key")
			}
			sec, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "my-vcluster-certs", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}

			if c.noSecretUpdate {
				if r.code == 0 {
					t.Fatalf("certguard exited 0 without update on secrets:\n%s", r.stderr)
				}
				if !slices.ContainsFunc(strings.Split(r.stderr, "\n"), func(l string) bool { return strings.Contains(l, "forbidden") }) {
					t.Errorf("no line says forbidden:\n%s", r.stderr)
				}
				if after := manifest(t, dir); !reflect.DeepEqual(before, after) {
					t.Errorf("the pki dir changed although the Secret could not be updated:\nbefore %v\nafter  %v", before, after)
				}
				if !reflect.DeepEqual(sec.Data, data) {
					t.Error("the Secret changed")
				}
				t.Logf("exit %d: %s", r.code, lastLine(r.stderr))
				return
			}

			if r.code != 0 {
				t.Fatalf("certguard %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
			}
			for _, k := range k0sLeafFiles {
				if _, ok := sec.Data[k]; ok {
					t.Errorf("the Secret still has %s", k)
				}
				if _, err := os.Stat(filepath.Join(dir, k)); err == nil {
					t.Errorf("the pki dir still has %s", k)
				}
			}
			if len(sec.Data) != len(data)-len(k0sLeafFiles) {
				t.Errorf("the Secret has %d keys, want %d", len(sec.Data), len(data)-len(k0sLeafFiles))
			}

			// The Event: recorded with the add-on's Role, skipped (best effort) without it.
			evs, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "reason=CertificatesRepaired"})
			if err != nil {
				t.Fatal(err)
			}
			codes := eventCreates(t, user, ns)
			if c.addon {
				if len(evs.Items) != 1 || evs.Items[0].InvolvedObject.Name != pod || evs.Items[0].Source.Component != "certguard" {
					t.Errorf("want one CertificatesRepaired Event on pod %s from certguard, got %+v", pod, evs.Items)
				}
				if len(codes) < 2 || slices.ContainsFunc(codes, func(c int) bool { return c != 201 }) {
					t.Errorf("%s's Event creates (watch's, then repair's) answered %v, want 201s", user, codes)
				}
			} else {
				if len(evs.Items) != 0 {
					t.Errorf("an Event was recorded without events: create: %+v", evs.Items)
				}
				if len(codes) < 2 || slices.ContainsFunc(codes, func(c int) bool { return c != 403 }) {
					t.Errorf("%s's Event creates (watch's, then repair's) answered %v, want 403s", user, codes)
				}
				if !strings.Contains(r.stderr, "cannot record Events") {
					t.Errorf("no warning about the missing permission:\n%s", r.stderr)
				}
			}

			// The init container's memory limit in the values files leaves room.
			limit := resource.MustParse(str(repairEntry, "resources", "limits", "memory"))
			if r.maxRSS == 0 {
				t.Log("peak RSS unknown: the memory limit is not checked")
			} else if r.maxRSS >= limit.Value()/2 {
				t.Errorf("certguard repair peaked at %d bytes RSS, more than half its memory limit %s", r.maxRSS, limit.String())
			}
		})
	}
}

func loadRole(t *testing.T, file string) *rbacv1.Role {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	var r rbacv1.Role
	if err := yaml.UnmarshalStrict(b, &r); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(r.Rules) == 0 {
		t.Fatalf("%s: no rules", file)
	}
	return &r
}

// withoutVerb takes one verb away from one core resource, keeping everything else.
func withoutVerb(rules []rbacv1.PolicyRule, res, verb string) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		if !slices.Contains(r.APIGroups, "") || !slices.Contains(r.Resources, res) {
			out = append(out, r)
			continue
		}
		others := r.DeepCopy()
		others.Resources = slices.DeleteFunc(slices.Clone(r.Resources), func(s string) bool { return s == res })
		if len(others.Resources) > 0 {
			out = append(out, *others)
		}
		out = append(out, rbacv1.PolicyRule{
			APIGroups: []string{""}, Resources: []string{res},
			Verbs: slices.DeleteFunc(slices.Clone(r.Verbs), func(s string) bool { return s == verb }),
		})
	}
	return out
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// eventCreates returns the status codes of every Event create by user in ns, in order.
func eventCreates(t *testing.T, user, ns string) []int {
	t.Helper()
	reqs, err := env.Requests(user)
	if err != nil {
		t.Fatal(err)
	}
	var codes []int
	for _, q := range reqs {
		if q.Verb == "create" && q.ObjectRef != nil && q.ObjectRef.Resource == "events" && q.ObjectRef.Namespace == ns {
			codes = append(codes, q.ResponseStatus.Code)
		}
	}
	return codes
}

// checkWatch runs certguard watch as the service account with the sidecar's args from the
// values file (listening on loopback, restarts in --dry-run), scrapes its metrics once it has
// read both sources, and stops it: the metrics the add-on chart's alerts use are there, and the
// Secret was readable with the RBAC under test.
func checkWatch(t *testing.T, kubeconfig, ns, dir, pod string, events bool) {
	t.Helper()
	_, watchEntry, _, _ := loadValues(t, valuesFiles[1])
	addr := freeAddr(t)
	args := append(strs(watchEntry, "args"), "--kubeconfig="+kubeconfig, "--namespace="+ns, "--pki-dir="+dir,
		"--pod-name="+pod, "--listen="+addr, "--dry-run")
	cmd, stderr, done := startCertguard(t, args)
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("certguard watch stopped with %v:\n%s", err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("certguard watch did not stop on SIGTERM:\n%s", stderr.String())
		}
	}
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	}()

	var metrics string
	deadline := time.Now().Add(20 * time.Second)
	for metrics == "" {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("certguard watch never became ready on %s:\n%s", addr, stderr.String())
		}
		select {
		case err := <-done:
			t.Fatalf("certguard %s: exited: %v\n%s", strings.Join(args, " "), err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if ready, err := http.Get("http://" + addr + "/readyz"); err == nil {
			ready.Body.Close()
			if ready.StatusCode == http.StatusOK {
				resp, err := http.Get("http://" + addr + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				metrics = string(b)
			}
		}
	}
	// Events are recorded after the first read: give them a moment before stopping.
	for end := time.Now().Add(5 * time.Second); len(eventCreates(t, "system:serviceaccount:"+ns+":vc-my-vcluster", ns)) == 0 && time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
	}
	// Its peak RSS so far against the sidecar's memory limit in the values file.
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err == nil {
		if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(status); m != nil {
			kib, _ := strconv.ParseInt(string(m[1]), 10, 64)
			limit := resource.MustParse(str(watchEntry, "resources", "limits", "memory"))
			t.Logf("certguard watch: peak RSS %.1f MiB (limit %s)", float64(kib)/1024, limit.String())
			if kib<<10 >= limit.Value()/2 {
				t.Errorf("certguard watch peaked at %d KiB, more than half its memory limit %s", kib, limit.String())
			}
		}
	}
	stop()

	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^x509_source_up\{source_kind="file",[^}]*\} 1$`),
		regexp.MustCompile(`(?m)^x509_source_up\{source_kind="kube-secret",source_name="` + ns + `/my-vcluster-certs"\} 1$`),
		regexp.MustCompile(`(?m)^x509_cert_not_after\{[^}]*filename="server\.crt"[^}]*\} \S+$`),
		regexp.MustCompile(`(?m)^x509_cert_expired\{[^}]*filename="server\.crt"[^}]*\} 1$`),
		regexp.MustCompile(`(?m)^x509_cert_expired\{[^}]*secret_key="server\.crt"[^}]*\} 1$`),
		regexp.MustCompile(`(?m)^certguard_disk_secret_drift 0$`),
	} {
		if !want.MatchString(metrics) {
			t.Errorf("certguard watch's metrics lack %s", want)
		}
	}
	if strings.Contains(stderr.String(), "forbidden") != !events {
		t.Errorf("certguard watch's log (events: create granted: %v):\n%s", events, stderr.String())
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
