package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	fleetsvc "github.com/certguard/certguard/fleet"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/restart"
	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	kwatch "k8s.io/apimachinery/pkg/watch"
)

// The kinds of vcluster the restart tests build, by what their StatefulSet runs.
const (
	guarded   = "guarded"   // certguard's init container (as charts/vcluster-values renders it), k0s v1.30.2
	unguarded = "unguarded" // no certguard init container
	k0sNew    = "k0s-new"   // certguard's init container, but k0s v1.35.1, which renews itself
)

// fleetVC is one vcluster on the host: its Secret, its StatefulSet and its pod <release>-0, which
// the test recreates and marks Ready as the StatefulSet controller and the kubelet would.
type fleetVC struct {
	ns, release, kind string
	pki               *pkigen.PKI
	ca                *pkigen.CA
	// issued is when the test last issued its k0s leaves; they expire a year later.
	issued time.Time
}

func (v *fleetVC) key() string { return v.ns + "/" + v.release }

// newFleetVC creates the three objects. leavesIssued places the k0s leaves in time; brokenCAKey
// writes garbage in ca.key, which certguard's repair refuses to work around with a leaf repair;
// initOpts edit certguard's init container (its args, env, valueFrom) when there is one.
func newFleetVC(t testing.TB, ns, release, kind string, leavesIssued time.Time, brokenCAKey bool, initOpts ...func(*corev1.Container)) *fleetVC {
	t.Helper()
	ctx := context.Background()
	p, err := pkigen.Generate(pkigen.Options{Now: leavesIssued, CAIssued: leavesIssued.Add(-2 * pkigen.Year), K0sIssued: leavesIssued})
	if err != nil {
		t.Fatal(err)
	}
	v := &fleetVC{ns: ns, release: release, kind: kind, pki: p, ca: p.CAs["ca"], issued: leavesIssued}
	data := p.SecretData()
	if brokenCAKey {
		data["ca.key"] = []byte("-----BEGIN RSA PRIVATE KEY-----\ngarbage\n-----END RSA PRIVATE KEY-----\n")
	}
	if _, err := kenv.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: release + "-certs"}, Type: corev1.SecretTypeOpaque, Data: data}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k0sImage := "ghcr.io/loft-sh/k0s:v1.30.2-k0s.0"
	if kind == k0sNew {
		k0sImage = "k0sproject/k0s:v1.35.1-k0s.0"
	}
	inits := []corev1.Container{{Name: "vcluster", Image: k0sImage, Command: []string{"cp", "/usr/local/bin/k0s", "/binaries/k0s"}}}
	if kind != unguarded {
		// As charts/vcluster-values renders it: a v2 plugin init container before the k0s copy.
		inits = append([]corev1.Container{{Name: "certguard", Image: "ghcr.io/certguard/certguard:v0.2.0", Command: []string{"/certguard"},
			Args: []string{"repair", "--vcluster-name=" + release, "--pki-dir=/data/k0s/pki", "--renew-before=30d"}}}, inits...)
		for _, o := range initOpts {
			o(&inits[0])
		}
	}
	labels := map[string]string{"app": "vcluster", "release": release}
	one := int32(1)
	if _, err := kenv.Client.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: release},
		Spec: appsv1.StatefulSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{InitContainers: inits, Containers: []corev1.Container{{Name: "syncer", Image: "ghcr.io/loft-sh/vcluster:0.25.0"}}}}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v.createPod(t)
	return v
}

// createPod plays the StatefulSet controller and the kubelet: pod <release>-0, Ready.
func (v *fleetVC) createPod(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: v.release + "-0", Labels: map[string]string{"app": "vcluster", "release": v.release}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "syncer", Image: "ghcr.io/loft-sh/vcluster:0.25.0"}}}}
	created, err := kenv.Client.CoreV1().Pods(v.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	created.Status.Phase = corev1.PodRunning
	if _, err := kenv.Client.CoreV1().Pods(v.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// renew plays certguard's init container on a guarded vcluster's new pod: new k0s leaves under
// the same CA, valid a year from at, written to the Secret.
func (v *fleetVC) renew(t testing.TB, at time.Time) {
	t.Helper()
	ctx := context.Background()
	caPEM := v.pki.Files["ca.crt"]
	leaves, err := pkigen.New(pkigen.Options{Now: at, K0sIssued: at}).IssueK0sLeaves(v.ca, caPEM)
	if err != nil {
		t.Fatal(err)
	}
	for {
		s, err := kenv.Client.CoreV1().Secrets(v.ns).Get(ctx, v.release+"-certs", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for path, b := range leaves {
			s.Data[pki.SecretKey(path)] = b
		}
		_, err = kenv.Client.CoreV1().Secrets(v.ns).Update(ctx, s, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	v.issued = at
}

// leafExpiry is when the k0s leaves the test last issued expire (pkigen back-dates NotBefore).
func (v *fleetVC) leafExpiry() time.Time { return v.issued.Add(-pkigen.Backdate).Add(pkigen.Year) }

// podDeletions follows the deletions of pods in ns, as the StatefulSet controller does.
func podDeletions(t testing.TB, ns string) <-chan string {
	t.Helper()
	w, err := kenv.Client.CoreV1().Pods(ns).Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	out := make(chan string, 1000)
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == kwatch.Deleted {
				out <- strings.TrimSuffix(p.Name, "-0")
			}
		}
	}()
	return out
}

// restartRules are the rules `fleet serve --restart-due` needs, as the add-on chart grants them.
var restartRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list", "watch", "get", "update"}},
	{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
}

// leaseRules are namespaced, in the service's own namespace.
var leaseRules = []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}}}

// userWithRules is a user with a ClusterRole of clusterRules and, in leaseNS, a Role of
// nsRules; it waits until the authorizer grants all of them.
func userWithRules(t testing.TB, clusterRules []rbacv1.PolicyRule, leaseNS string, nsRules []rbacv1.PolicyRule) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("fleet-restart-%d", time.Now().UnixNano())
	subj := []rbacv1.Subject{{Kind: "User", Name: name, APIGroup: rbacv1.GroupName}}
	if _, err := kenv.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: clusterRules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kenv.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}, Subjects: subj}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(nsRules) > 0 {
		if _, err := kenv.Client.RbacV1().Roles(leaseNS).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: nsRules}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := kenv.Client.RbacV1().RoleBindings(leaseNS).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}, Subjects: subj}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(ns string, r rbacv1.PolicyRule) {
		for _, verb := range r.Verbs {
			deadline := time.Now().Add(10 * time.Second)
			for {
				rv, err := kenv.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
					User: name, ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: r.APIGroups[0], Resource: r.Resources[0]}}}, metav1.CreateOptions{})
				if err == nil && rv.Status.Allowed {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("RBAC %s on %s for %s not in effect after 10 s: %v", verb, r.Resources[0], name, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	for _, r := range clusterRules {
		check("", r)
	}
	for _, r := range nsRules {
		check(leaseNS, r)
	}
	return name
}

// windowAround is a daily restart window that is open now and for the next hours (UTC).
func windowAround(now time.Time) string {
	from := now.UTC().Add(-time.Hour).Truncate(time.Minute)
	to := now.UTC().Add(3 * time.Hour).Truncate(time.Minute)
	return from.Format("15:04") + "-" + to.Format("15:04")
}

// stsEvents returns the reasons of the Events certguard recorded on a StatefulSet.
func stsEvents(t testing.TB, ns, sts string) []string {
	t.Helper()
	list, err := kenv.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.kind": "StatefulSet", "involvedObject.name": sts}.String()})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Reason)
	}
	return out
}

// TestFleetRestartDue runs `certguard fleet serve --restart-due --max-concurrent 2` as a user
// with exactly the chart's grants, over six vclusters whose leaves are due (three guarded, one
// without the init container, one on k0s v1.35.1, one whose ca.key is garbage) and one that is
// not due. The test plays the StatefulSet controller, the kubelet and the init container. The
// two most urgent guarded vclusters are restarted in this opening and no more, even once both
// are back: --max-concurrent is per opening, and c is booked on the next one.
func TestFleetRestartDue(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "restart")
	home, _ := kenv.Namespace(ctx, "certguard")
	now := time.Now()
	dueIssued := now.Add(-pkigen.Year + 10*day) // leaves expire in 10 days; --renew-before=30d
	vcs := map[string]*fleetVC{}
	for _, c := range []struct {
		name, kind string
		issued     time.Time
		broken     bool
	}{
		{"a", guarded, dueIssued, false}, {"b", guarded, dueIssued.Add(time.Hour), false}, {"c", guarded, dueIssued.Add(2 * time.Hour), false},
		{"bare", unguarded, dueIssued, false}, {"newk0s", k0sNew, dueIssued, false}, {"refused", guarded, dueIssued, true},
		{"fresh", guarded, now.Add(-10 * day), false},
	} {
		vcs[c.name] = newFleetVC(t, ns, c.name, c.kind, c.issued, c.broken)
	}
	deleted := podDeletions(t, ns)
	user := userWithRules(t, restartRules, home, leaseRules)
	kc, err := kenv.Kubeconfig(t.TempDir(), user)
	if err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--kubeconfig", kc, "--restart-due", "--restart-window", windowAround(now), "--max-concurrent", "2",
		"--lease-namespace", home, "--pod-name", "replica-1", "-n", ns)

	var order []string
	deadline := time.After(90 * time.Second)
	for len(order) < 2 {
		select {
		case rel := <-deleted:
			order = append(order, rel)
		case <-deadline:
			t.Fatalf("restarted %v within 90 s, want a and b\n%s", order, s.log())
		}
	}
	slices.Sort(order)
	if strings.Join(order, ",") != "a,b" {
		t.Errorf("restarted %v, want a and b (the two most urgent)", order)
	}
	for _, rel := range order {
		vcs[rel].renew(t, time.Now())
		vcs[rel].createPod(t)
	}
	// Both are back, so two restarts are no longer in flight; but this opening has had its
	// --max-concurrent 2. Wait for a tick that has seen them back (its plan, built after they
	// came back, no longer has them restarting), then for one more: c must not have been
	// restarted by either. The apiserver's audit log is the count of what the service deleted,
	// whatever the test's own pod watch saw or missed.
	back := time.Now()
	settled := s.waitPlan(t, "a and b seen back", func(p fleetsvc.Plan) bool {
		rows := rowsByKey(p)
		return p.Now.After(back) && rows[ns+"/a"].State != fleetsvc.StateRestarting && rows[ns+"/b"].State != fleetsvc.StateRestarting
	})
	later := s.waitPlan(t, "one more tick", func(p fleetsvc.Plan) bool { return p.Now.After(settled.Now) })
	if r := rowsByKey(later)[ns+"/c"]; r.State != fleetsvc.StateBooked {
		t.Errorf("c %+v after the opening had its two, want booked on the next one\n%s", r, s.log())
	}
	if got := podDeletes(t, user); !slices.Equal(got, []string{ns + "/a-0", ns + "/b-0"}) {
		t.Errorf("the service deleted pods %v, want a-0 and b-0 once each: --max-concurrent 2 per opening\n%s", got, s.log())
	}
	for _, rel := range []string{"a", "b"} {
		sec, err := kenv.Client.CoreV1().Secrets(ns).Get(ctx, rel+"-certs", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := time.Parse(time.RFC3339, sec.Annotations[restart.LastRestartAnnotation]); err != nil || sec.Annotations[restart.RestartedPodAnnotation] == "" {
			t.Errorf("%s: restart record %q, %q", rel, sec.Annotations[restart.LastRestartAnnotation], sec.Annotations[restart.RestartedPodAnnotation])
		}
		if ev := stsEvents(t, ns, rel); !contains(ev, "CertificateRenewalRestart") || !contains(ev, "CertificateRenewalRenewed") {
			t.Errorf("%s: Events %v, want CertificateRenewalRestart and CertificateRenewalRenewed on the StatefulSet", rel, ev)
		}
	}
	if ev := stsEvents(t, ns, "c"); !contains(ev, "CertificateRenewalRestartPlanned") {
		t.Errorf("c: Events %v, want CertificateRenewalRestartPlanned", ev)
	}
	if ev := stsEvents(t, ns, "refused"); !contains(ev, "CertificateRenewalRestartBlocked") {
		t.Errorf("refused: Events %v, want CertificateRenewalRestartBlocked", ev)
	}
	_, metrics := s.get("/metrics")
	for _, want := range []string{
		`certguard_vcluster_init_container\{secret_namespace="` + ns + `",vcluster="bare"\} 0`,
		`certguard_vcluster_init_container\{secret_namespace="` + ns + `",vcluster="a"\} 1`,
		`certguard_vcluster_k0s_renews\{secret_namespace="` + ns + `",vcluster="newk0s"\} 1`,
		`certguard_vcluster_restart_blocked\{secret_namespace="` + ns + `",vcluster="refused"\} 1`,
		`certguard_fleet_restart_leader 1`,
		`certguard_vcluster_restart_blocker\{code="k0s-renews",secret_namespace="` + ns + `",vcluster="newk0s"\} 1`,
		`certguard_vcluster_restart_blocker\{code="would-refuse",secret_namespace="` + ns + `",vcluster="refused"\} 1`,
	} {
		if !has(metrics, want) {
			t.Errorf("no %s in\n%s", want, grepLines(metrics, "certguard_vcluster_(init|k0s|restart)|leader"))
		}
	}
	_, plan := s.get("/plan")
	for _, want := range []string{`"status": "K0S-RENEWS"`, "no certguard init container", `"blocker": "would-refuse"`, `"blocker": "k0s-renews"`, `"blocker": "no-init-container"`} {
		if !strings.Contains(plan, want) {
			t.Errorf("/plan lacks %q:\n%s", want, plan)
		}
	}
	var p fleetsvc.Plan
	if err := json.Unmarshal([]byte(plan), &p); err != nil {
		t.Fatal(err)
	}
	if r := rowsByKey(p)[ns+"/c"]; r.State != fleetsvc.StateBooked || !r.Window.After(now) || r.Window.Sub(now) < 20*time.Hour {
		t.Errorf("/plan row of c %+v, want booked on the next (daily) opening", r)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	// The Lease was released at shutdown.
	l, err := kenv.Client.CoordinationV1().Leases(home).Get(ctx, "certguard-fleet", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
		t.Errorf("Lease still held by %q after SIGTERM", *l.Spec.HolderIdentity)
	}
}

// waitPlan polls /plan until cond holds, for at most a minute (ticks are 10 s apart; an
// informer's first LIST has taken seconds on a loaded 2-core machine), and returns that plan.
func (s *served) waitPlan(t testing.TB, what string, cond func(fleetsvc.Plan) bool) fleetsvc.Plan {
	t.Helper()
	var last string
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		code, body := s.get("/plan")
		if code != http.StatusOK {
			continue
		}
		last = body
		var p fleetsvc.Plan
		if err := json.Unmarshal([]byte(body), &p); err == nil && cond(p) {
			return p
		}
	}
	t.Fatalf("no /plan with %s within a minute; last:\n%s\n%s", what, last, s.log())
	return fleetsvc.Plan{}
}

// podDeletes is every pod delete the apiserver served for user, as "<namespace>/<name>", sorted.
func podDeletes(t testing.TB, user string) []string {
	t.Helper()
	reqs, err := kenv.Requests(user)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range reqs {
		if r.Verb == "delete" && r.ObjectRef != nil && r.ObjectRef.Resource == "pods" {
			out = append(out, r.ObjectRef.Namespace+"/"+r.ObjectRef.Name)
		}
	}
	slices.Sort(out)
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestFleetRestartDueDryRunAndRBAC: --dry-run deletes nothing and records nothing; without pods
// delete in its grants the service still starts (it serves metrics) and says what is missing
// when it tries; without --restart-window it refuses with exit 2.
func TestFleetRestartDueDryRunAndRBAC(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "dryrun")
	home, _ := kenv.Namespace(ctx, "certguard")
	now := time.Now()
	newFleetVC(t, ns, "a", guarded, now.Add(-pkigen.Year+10*day), false)
	deleted := podDeletions(t, ns)

	code, _, stderr := runBin(t, nil, "fleet", "serve", "--restart-due", "--lease-namespace", home)
	if code != exitUsage || !strings.Contains(stderr, "--restart-due needs --restart-window") {
		t.Errorf("without a window: exit %d, %q", code, stderr)
	}

	user := userWithRules(t, restartRules, home, leaseRules)
	kc, err := kenv.Kubeconfig(t.TempDir(), user)
	if err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--kubeconfig", kc, "--restart-due", "--dry-run", "--restart-window", windowAround(now), "--lease-namespace", home, "-n", ns)
	// /plan serves, once synced, a plan with a to restart now, until the tick that restarts it
	// (or with --dry-run, would) publishes its own when it has done everything it does: a is then
	// booked on a later opening (dry run: counted as restarted in this one), or restarting if it
	// was deleted. By then the apiserver's audit log holds every request of that tick: no pod
	// delete, no Secret write.
	p := s.waitPlan(t, "the dry-run tick", func(p fleetsvc.Plan) bool {
		r, ok := rowsByKey(p)[ns+"/a"]
		return ok && r.State != fleetsvc.StateRestartNow
	})
	if r := rowsByKey(p)[ns+"/a"]; r.State != fleetsvc.StateBooked || !strings.Contains(s.log(), "dry run: would delete pod "+ns+"/a-0") {
		t.Errorf("after the dry-run tick: a %+v, want booked on a later opening and a dry-run line:\n%s", r, s.log())
	}
	reqs, err := kenv.Requests(user)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reqs {
		if r.Verb == "delete" || (r.Verb == "update" && r.ObjectRef != nil && r.ObjectRef.Resource == "secrets") {
			t.Fatalf("--dry-run made %s %s", r.Verb, r.RequestURI)
		}
	}
	select {
	case rel := <-deleted:
		t.Fatalf("--dry-run deleted the pod of %s", rel)
	default:
	}
	sec, err := kenv.Client.CoreV1().Secrets(ns).Get(ctx, "a-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := sec.Annotations[restart.LastRestartAnnotation]; ok {
		t.Errorf("--dry-run recorded a restart: %q", v)
	}
	_ = s.stop()

	// The same grants without statefulsets watch: exit 1, one line naming the verb and resource.
	var noWatch []rbacv1.PolicyRule
	for _, r := range restartRules {
		if r.Resources[0] == "statefulsets" {
			r = rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: []string{"list"}}
		}
		noWatch = append(noWatch, r)
	}
	user = userWithRules(t, noWatch, home, leaseRules)
	kc, err = kenv.Kubeconfig(t.TempDir(), user)
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runBin(t, nil, "fleet", "serve", "--kubeconfig", kc, "--listen", "127.0.0.1:0", "-n", ns)
	if code != exitError || !strings.Contains(stderr, `grant RBAC "watch" on statefulsets`) || strings.Count(stderr, "certguard: ") != 1 {
		t.Errorf("without statefulsets watch: exit %d, stderr %q", code, stderr)
	}
}

// TestFleetPlanReadsStatefulSets: `fleet plan` judges vclusters as the restarter does when it may
// list StatefulSets (only the guarded one is booked, the others say why), and without that grant
// still plans from the Secrets alone, with a note.
func TestFleetPlanReadsStatefulSets(t *testing.T) {
	ctx := context.Background()
	ns, _ := kenv.Namespace(ctx, "planwl")
	issued := time.Now().Add(-pkigen.Year + 10*day)
	newFleetVC(t, ns, "a", guarded, issued, false)
	newFleetVC(t, ns, "bare", unguarded, issued, false)
	newFleetVC(t, ns, "newk0s", k0sNew, issued, false)
	type row struct {
		Release, Status, Note string
		Window                time.Time
	}
	plan := func(user string) (map[string]row, string) {
		t.Helper()
		kc, err := kenv.Kubeconfig(t.TempDir(), user)
		if err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runBin(t, nil, "fleet", "plan", "--kubeconfig", kc, "-n", ns, "-o", "json", "--restart-window", "Sat 02:00-04:00")
		if code != 0 {
			t.Fatalf("fleet plan: exit %d: %s", code, stderr)
		}
		var p struct{ Vclusters []row }
		if err := json.Unmarshal([]byte(stdout), &p); err != nil {
			t.Fatal(err)
		}
		out := map[string]row{}
		for _, r := range p.Vclusters {
			out[r.Release] = r
		}
		return out, stderr
	}
	secretsList := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}
	stsList := rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"list"}}

	got, stderr := plan(userWithRules(t, []rbacv1.PolicyRule{secretsList, stsList}, "", nil))
	if got["a"].Window.IsZero() || !got["bare"].Window.IsZero() || !got["newk0s"].Window.IsZero() {
		t.Errorf("booked: a %v, bare %v, newk0s %v; want only a", got["a"].Window, got["bare"].Window, got["newk0s"].Window)
	}
	if !strings.Contains(got["bare"].Note, "no certguard init container") || got["newk0s"].Status != "K0S-RENEWS" {
		t.Errorf("bare %+v, newk0s %+v", got["bare"], got["newk0s"])
	}
	if stderr != "" {
		t.Errorf("stderr %q", stderr)
	}

	got, stderr = plan(userWithRules(t, []rbacv1.PolicyRule{secretsList}, "", nil))
	if got["a"].Window.IsZero() || got["bare"].Window.IsZero() || got["newk0s"].Window.IsZero() {
		t.Errorf("from the Secrets alone every due vcluster is booked: %+v", got)
	}
	if !strings.Contains(stderr, "certguard: note: every vcluster booked as if it ran certguard's init container") || !strings.Contains(stderr, "statefulsets") {
		t.Errorf("no note on stderr without list on statefulsets: %q", stderr)
	}
}

// TestTwoReplicasNeverRestartAtOnce: two restarters (two replicas of fleet serve) with their own
// informers and Leases tick at the same instants over two due vclusters, --max-concurrent 1 each,
// and no pod comes back. One Lease holder, so one restart in all; without the Lease each replica
// would restart one.
func TestTwoReplicasNeverRestartAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns, _ := kenv.Namespace(ctx, "replicas")
	home, _ := kenv.Namespace(ctx, "certguard")
	issued := time.Now().Add(-pkigen.Year + 10*day)
	newFleetVC(t, ns, "a", guarded, issued, false)
	newFleetVC(t, ns, "b", guarded, issued.Add(time.Hour), false)
	deleted := podDeletions(t, ns)
	c, err := kube.NewClient(kenv.Config)
	if err != nil {
		t.Fatal(err)
	}
	w, err := restart.ParseWindow(windowAround(time.Now()), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	replica := func(id string) *fleetsvc.Restarter {
		state, workloads, synced := fleetInformers(t, ctx, c, ns, func(err error) { t.Error(err) })
		waitFor(t, synced)
		return &fleetsvc.Restarter{State: state, Workloads: workloads, Parse: parseInitContainer, Log: quiet,
			Settings: fleetsvc.PlanSettings{Window: w, MaxConcurrent: 1, MinInterval: 24 * time.Hour, ReadyTimeout: 15 * time.Minute, RenewBefore: 120 * day},
			API: &fleetsvc.KubeRestartAPI{Client: c, Log: quiet, Instance: id,
				Lease: &kube.Lease{Client: c, Namespace: home, Name: "certguard-fleet", Identity: id, Duration: time.Minute}}}
	}
	r1, r2 := replica("r1"), replica("r2")
	for range 5 {
		var wg sync.WaitGroup
		now := time.Now()
		for _, r := range []*fleetsvc.Restarter{r1, r2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.Tick(ctx, now)
			}()
		}
		wg.Wait()
		time.Sleep(200 * time.Millisecond)
	}
	var got []string
	for len(deleted) > 0 {
		got = append(got, <-deleted)
	}
	_, lead1 := r1.Plan()
	_, lead2 := r2.Plan()
	if len(got) != 1 || lead1 == lead2 {
		t.Errorf("restarted %v (want exactly one), leaders r1=%v r2=%v (want exactly one)", got, lead1, lead2)
	}
}

// fleetInformers runs fleet serve's two informers over ns until ctx ends, as fleet.Service runs
// them, and returns what they fill and whether both have synced.
func fleetInformers(t testing.TB, ctx context.Context, c *kube.Client, ns string, onErr func(error)) (*fleetsvc.State, *fleetsvc.Workloads, func() bool) {
	t.Helper()
	state, workloads := fleetsvc.NewState(), fleetsvc.NewWorkloads()
	sinf, ss, err := kube.CertSecretInformer(c, ns, fleetsvc.Parse, state.Set, onErr)
	if err != nil {
		t.Fatal(err)
	}
	winf, ws, err := kube.StatefulSetInformer(c, ns, workloads.Set, onErr)
	if err != nil {
		t.Fatal(err)
	}
	go kube.RunInformer(ctx, sinf)
	go kube.RunInformer(ctx, winf)
	return state, workloads, func() bool { return ss() && ws() }
}
