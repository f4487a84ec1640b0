package charts_test

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFleetServeChartRBAC installs the chart with fleet.serve.enabled for real and runs the
// Deployment's own args as its ServiceAccount: the fleet serve ClusterRole, exactly as rendered,
// is enough for fleet serve to sync and report a vcluster in another namespace. The same
// ClusterRole without watch on secrets makes fleet serve exit 1 with one line naming the verb.
func TestFleetServeChartRBAC(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "fleetserve")
	vcNs := namespace(t, "fleetvc")
	expiredPKI(t, vcNs, "my-vc")
	role := "certguard-fleet-" + ns // cluster-scoped: one name per test run
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("rbac: {events: false}\nfleet: {name: "+role+", serve: {enabled: true}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, nil, helmBin, "template", "certguard-fleet", chartDir, "-n", ns, "-f", values)
	rendered := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(rendered, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, kubectlBin, "apply", "-n", ns, "-f", rendered)
	var args []string
	for _, o := range parseDocs(t, r.stdout) {
		if str(o, "kind") == "Deployment" {
			args = strs(get(o, "spec", "template", "spec", "containers").([]any)[0], "args")
		}
	}
	if len(args) < 2 || args[0] != "fleet" || args[1] != "serve" {
		t.Fatalf("the Deployment's args %q", args)
	}
	sa := role + "-serve"
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}
	kc, err := env.Kubeconfig(t.TempDir(), "system:serviceaccount:"+ns+":"+sa, groups...)
	if err != nil {
		t.Fatal(err)
	}
	waitAllowed(t, "system:serviceaccount:"+ns+":"+sa, groups, "watch", true)

	// The Deployment's args (serveFleet moves --listen to a local port).
	local := append([]string{}, args...)
	fs := serveFleet(t, append(local, "--kubeconfig="+kc), nil)
	want := regexp.MustCompile(`(?m)^certguard_vcluster_status\{secret_namespace="` + vcNs + `",status="EXPIRED",vcluster="my-vc"\} 1$`)
	fs.waitMetrics(t, "fleet serve as the chart's ServiceAccount never reported my-vc as EXPIRED", want.MatchString)
	fs.stop(t)

	// The same ClusterRole without watch on secrets, bound to another ServiceAccount.
	cr, err := env.Client.RbacV1().ClusterRoles().Get(ctx, sa, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	noWatch := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: role + "-nowatch"}, Rules: cr.DeepCopy().Rules}
	for i := range noWatch.Rules {
		if !slices.Equal(noWatch.Rules[i].Resources, []string{"secrets"}) {
			continue
		}
		var verbs []string
		for _, v := range noWatch.Rules[i].Verbs {
			if v != "watch" {
				verbs = append(verbs, v)
			}
		}
		noWatch.Rules[i].Verbs = verbs
	}
	if _, err := env.Client.RbacV1().ClusterRoles().Create(ctx, noWatch, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa2 := "system:serviceaccount:" + ns + ":nowatch"
	if _, err := env.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: noWatch.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: noWatch.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "nowatch", Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAllowed(t, sa2, groups, "list", true)
	kc2, err := env.Kubeconfig(t.TempDir(), sa2, groups...)
	if err != nil {
		t.Fatal(err)
	}
	// Text logs: once the INFO lines are dropped, only the error line is left.
	for i, a := range local {
		if strings.HasPrefix(a, "--log-format=") {
			local[i] = "--log-format=text"
		}
	}
	res := run(t, nil, certguardBin, append(local, "--listen="+freeAddr(t), "--kubeconfig="+kc2)...)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(res.stderr), "\n") {
		if !strings.Contains(l, "level=INFO") {
			lines = append(lines, l)
		}
	}
	if res.code != 1 || len(lines) != 1 || !strings.Contains(lines[0], `cannot watch resource "secrets"`) || !strings.Contains(lines[0], `grant RBAC "watch"`) {
		t.Fatalf("without watch: exit %d, want 1 and one line naming watch:\n%s", res.code, res.stderr)
	}
}

// waitAllowed polls a SubjectAccessReview until RBAC's cache says user may (or may not) verb
// secrets cluster-wide: a new binding reaches the authorizer a moment after it is created.
func waitAllowed(t *testing.T, user string, groups []string, verb string, want bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); ; {
		rev, err := env.Client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: "secrets"}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rev.Status.Allowed == want {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s may %s secrets: %v, want %v", user, verb, rev.Status.Allowed, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFleetServeChartAccess installs the fleet serve objects with and without restartDue and asks
// the real apiserver's authorizer (SubjectAccessReview) what their ServiceAccount may do: every
// verb on every resource it uses or might be tempted to, cluster-wide, in a vcluster's namespace,
// in its own namespace and on its Lease by name. Exactly the grants written below, no more.
func TestFleetServeChartAccess(t *testing.T) {
	ns := namespace(t, "fleetaccess")
	vcNs := namespace(t, "fleetaccessvc")
	resources := []string{"/secrets", "/pods", "/events", "/configmaps", "/serviceaccounts", "apps/statefulsets",
		"apps/deployments", "events.k8s.io/events", "coordination.k8s.io/leases"}
	verbs := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	for _, c := range []struct {
		name   string
		values string // fleet.serve's values besides enabled
		// "group/resource verb" allowed cluster-wide (so in every namespace), in the release
		// namespace only, and on the Lease <fleet.name>-serve by name only.
		everywhere, own, lease []string
	}{
		{
			name:       "serve",
			everywhere: []string{"/secrets list", "/secrets watch", "apps/statefulsets list", "apps/statefulsets watch"},
		},
		{
			name:   "restart-due",
			values: `restartDue: true, restartWindow: "Sat 02:00-04:00"`,
			everywhere: []string{"/secrets list", "/secrets watch", "/secrets get", "/secrets update", "apps/statefulsets list", "apps/statefulsets watch",
				"/pods get", "/pods delete", "/events create"},
			own:   []string{"coordination.k8s.io/leases create"},
			lease: []string{"coordination.k8s.io/leases get", "coordination.k8s.io/leases update"},
		},
		{
			// A dry run previews the real thing: the same grants.
			name:   "restart-due-dry-run",
			values: `restartDue: true, dryRun: true, restartWindow: "Sat 02:00-04:00"`,
			everywhere: []string{"/secrets list", "/secrets watch", "/secrets get", "/secrets update", "apps/statefulsets list", "apps/statefulsets watch",
				"/pods get", "/pods delete", "/events create"},
			own:   []string{"coordination.k8s.io/leases create"},
			lease: []string{"coordination.k8s.io/leases get", "coordination.k8s.io/leases update"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			fleetName := "cgf-" + c.name + "-" + ns // cluster-scoped: one name per test run
			name := fleetName + "-serve"
			values := filepath.Join(t.TempDir(), "values.yaml")
			text := "rbac: {events: false}\nfleet: {name: " + fleetName + ", serve: {enabled: true"
			if c.values != "" {
				text += ", " + c.values
			}
			if err := os.WriteFile(values, []byte(text+"}}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := mustRun(t, nil, helmBin, "template", "certguard-fleet", chartDir, "-n", ns, "-f", values)
			rendered := filepath.Join(t.TempDir(), "fleet.yaml")
			if err := os.WriteFile(rendered, []byte(r.stdout), 0o600); err != nil {
				t.Fatal(err)
			}
			mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, kubectlBin, "apply", "-n", ns, "-f", rendered)
			user := "system:serviceaccount:" + ns + ":" + name
			groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}

			// A new binding reaches the authorizer a moment after it is created: wait for one
			// grant of each binding, then ask everything once.
			waitAllowed(t, user, groups, "list", true)
			if len(c.own) > 0 {
				for end := time.Now().Add(10 * time.Second); !allowed(t, user, groups, ns, "coordination.k8s.io", "leases", "create", ""); {
					if time.Now().After(end) {
						t.Fatalf("%s never got the Lease Role", user)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			everywhere := map[string]bool{}
			for _, g := range c.everywhere {
				everywhere[g] = true
			}
			own := maps.Clone(everywhere)
			for _, g := range c.own {
				own[g] = true
			}
			lease := maps.Clone(own)
			for _, g := range c.lease {
				lease[g] = true
			}
			var checked, granted int
			check := func(where, namespace, resourceName string, want map[string]bool, res, verb string) {
				group, resource, _ := strings.Cut(res, "/")
				got := allowed(t, user, groups, namespace, group, resource, verb, resourceName)
				checked++
				if got {
					granted++
				}
				if got != want[res+" "+verb] {
					t.Errorf("%s may %s %s %s: %v, want %v", c.name, verb, res, where, got, want[res+" "+verb])
				}
			}
			for _, res := range resources {
				for _, verb := range verbs {
					check("cluster-wide", "", "", everywhere, res, verb)
					check("in namespace "+vcNs, vcNs, "", everywhere, res, verb)
					check("in its own namespace", ns, "", own, res, verb)
				}
			}
			for _, verb := range verbs {
				check("on its Lease "+name, ns, name, lease, "coordination.k8s.io/leases", verb)
				check("on another Lease", ns, "someone-elses", own, "coordination.k8s.io/leases", verb)
				check("on a Lease "+name+" in "+vcNs, vcNs, name, everywhere, "coordination.k8s.io/leases", verb)
			}
			t.Logf("%d SubjectAccessReviews, %d allowed", checked, granted)
		})
	}
}

// allowed asks the apiserver's authorizer whether user may verb group/resource (named
// resourceName, when not empty) in namespace ("" for cluster-wide).
func allowed(t *testing.T, user string, groups []string, namespace, group, resource, verb, resourceName string) bool {
	t.Helper()
	rev, err := env.Client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Group: group, Resource: resource, Verb: verb, Name: resourceName}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rev.Status.Allowed
}

// TestFleetServeChartRestartDue runs the restartDue Deployment's args and env, with the downward
// API's values filled in by hand, as its ServiceAccount, over a vcluster in another namespace
// whose k0s leaves have expired and whose StatefulSet runs certguard's init container: the
// chart's grants and wiring are enough for fleet serve to take its Lease in the release namespace
// under the pod's name, record the restart on the Secret, raise the Event on the StatefulSet and
// delete the pod.
func TestFleetServeChartRestartDue(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "fleetrestart")
	vcNs := namespace(t, "fleetrestartvc")
	expiredPKI(t, vcNs, "my-vc")
	guardedStatefulSet(t, vcNs, "my-vc")
	fleetName := "cgf-rd-" + ns
	name := fleetName + "-serve"
	// A daily window open from an hour ago to three hours from now (UTC).
	now := time.Now().UTC()
	window := now.Add(-time.Hour).Format("15:04") + "-" + now.Add(3*time.Hour).Format("15:04")
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte("rbac: {events: false}\nfleet: {name: "+fleetName+
		`, serve: {enabled: true, restartDue: true, restartWindow: "`+window+`"}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, nil, helmBin, "template", "certguard-fleet", chartDir, "-n", ns, "-f", values)
	rendered := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(rendered, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, kubectlBin, "apply", "-n", ns, "-f", rendered)
	var c obj
	for _, o := range parseDocs(t, r.stdout) {
		if str(o, "kind") == "Deployment" {
			c = get(o, "spec", "template", "spec", "containers", 0).(obj)
		}
	}
	const pod = "certguard-fleet-serve-7d4b9-x2k4q"
	fieldRefs := map[string]string{"metadata.namespace": ns, "metadata.name": pod}
	var envs []string
	for _, e := range get(c, "env").([]any) {
		if str(e, "name") == "GOMEMLIMIT" {
			envs = append(envs, "GOMEMLIMIT="+str(e, "value"))
			continue
		}
		v, ok := fieldRefs[str(e, "valueFrom", "fieldRef", "fieldPath")]
		if !ok {
			t.Fatalf("env %v: not a downward API field the test knows", e)
		}
		envs = append(envs, str(e, "name")+"="+v)
	}
	user := "system:serviceaccount:" + ns + ":" + name
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns}
	waitAllowed(t, user, groups, "list", true)
	for end := time.Now().Add(10 * time.Second); !allowed(t, user, groups, ns, "coordination.k8s.io", "leases", "create", ""); {
		if time.Now().After(end) {
			t.Fatalf("%s never got the Lease Role", user)
		}
		time.Sleep(50 * time.Millisecond)
	}
	kc, err := env.Kubeconfig(t.TempDir(), user, groups...)
	if err != nil {
		t.Fatal(err)
	}
	fs := serveFleet(t, append(strs(c, "args"), "--kubeconfig="+kc), envs)
	fs.waitMetrics(t, "fleet serve --restart-due as the chart's ServiceAccount never held its Lease",
		func(m string) bool { return strings.Contains(m, "\ncertguard_fleet_restart_leader 1\n") })
	lease := mustRun(t, []string{"KUBECONFIG=" + adminKubeconfig}, kubectlBin, "get", "lease", "-n", ns, name, "-o", "jsonpath={.spec.holderIdentity}")
	if lease.stdout != pod {
		t.Errorf("Lease %s/%s holder %q, want the pod's name %q", ns, name, lease.stdout, pod)
	}
	// The restart: the pod gone, the record on the Secret, the Event on the StatefulSet.
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, err := env.Client.CoreV1().Pods(vcNs).Get(ctx, "my-vc-0", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("pod my-vc-0 not deleted within 30 s (err %v):\n%s", err, fs.stderr.String())
		}
	}
	sec, err := env.Client.CoreV1().Secrets(vcNs).Get(ctx, "my-vc-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Annotations["certguard.dev/last-restart"] == "" || sec.Annotations["certguard.dev/restarted-pod"] == "" {
		t.Errorf("no restart record on the Secret: %v", sec.Annotations)
	}
	evs, err := env.Client.CoreV1().Events(vcNs).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=StatefulSet,involvedObject.name=my-vc"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) == 0 || evs.Items[0].Reason != "CertificateRenewalRestart" {
		t.Errorf("Events on StatefulSet my-vc: %v, want CertificateRenewalRestart", evs.Items)
	}
	fs.stop(t)
}

// guardedStatefulSet creates the StatefulSet of a vcluster v0.25 with certguard's init container
// (as charts/vcluster-values renders it) and its pod <release>-0, which the test apiserver (no
// controllers) would otherwise never have.
func guardedStatefulSet(t *testing.T, ns, release string) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": "vcluster", "release": release}
	one := int32(1)
	inits := []corev1.Container{
		{Name: "certguard", Image: "ghcr.io/certguard/certguard:v0.1.0", Command: []string{"/certguard"}, Args: []string{"repair", "--vcluster-name=" + release}},
		{Name: "vcluster", Image: "ghcr.io/loft-sh/k0s:v1.30.2-k0s.0", Command: []string{"cp", "/usr/local/bin/k0s", "/binaries/k0s"}},
	}
	containers := []corev1.Container{{Name: "syncer", Image: "ghcr.io/loft-sh/vcluster:0.25.0"}}
	if _, err := env.Client.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: release},
		Spec: appsv1.StatefulSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{InitContainers: inits, Containers: containers}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := env.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: release + "-0", Labels: labels},
		Spec: corev1.PodSpec{Containers: containers}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Running, as the kubelet would report it: the fleet never restarts a Pending pod (its init
	// container runs when it starts anyway).
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := env.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// fleetServe is the certguard binary running `fleet serve` for a test.
type fleetServe struct {
	cmd    *exec.Cmd
	addr   string
	stderr bytes.Buffer
	done   chan error
}

// serveFleet starts certguard with args (a Deployment's: its --listen is moved to a free local
// port), in the test's environment without KUBECONFIG and CERTGUARD_* plus env; it is killed at
// the test's end if still running.
func serveFleet(t *testing.T, args, env []string) *fleetServe {
	t.Helper()
	fs := &fleetServe{addr: freeAddr(t), done: make(chan error, 1)}
	local := append([]string{}, args...)
	for i, a := range local {
		if strings.HasPrefix(a, "--listen=") {
			local[i] = "--listen=" + fs.addr
		}
	}
	fs.cmd = exec.Command(certguardBin, local...)
	fs.cmd.Env = append(cleanEnv(), env...)
	fs.cmd.Stderr = &fs.stderr
	if err := fs.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { fs.done <- fs.cmd.Wait() }()
	t.Cleanup(func() {
		if fs.cmd.ProcessState == nil {
			_ = fs.cmd.Process.Kill()
			<-fs.done
		}
	})
	return fs
}

// waitMetrics scrapes /metrics, once /readyz says the state is whole, until ok holds (at most
// 20 s), and fails the test with what otherwise.
func (fs *fleetServe) waitMetrics(t *testing.T, what string, ok func(metrics string) bool) {
	t.Helper()
	var metrics string
	for end := time.Now().Add(20 * time.Second); !ok(metrics); {
		if time.Now().After(end) {
			t.Fatalf("%s:\n%s\n%s", what, metrics, fs.stderr.String())
		}
		select {
		case err := <-fs.done:
			t.Fatalf("fleet serve exited: %v\n%s", err, fs.stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get("http://" + fs.addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				resp, err := http.Get("http://" + fs.addr + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				metrics = string(b)
			}
		}
	}
}

// stop sends SIGTERM and requires a clean exit.
func (fs *fleetServe) stop(t *testing.T) {
	t.Helper()
	_ = fs.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-fs.done; err != nil {
		t.Errorf("fleet serve on SIGTERM: %v\n%s", err, fs.stderr.String())
	}
}
