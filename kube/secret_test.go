package kube_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/kube/kubetest"
	"github.com/certguard/certguard/pki"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

var env *kubetest.Env

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m, &env)) }

var userN int

// user makes a fresh user bound to a Role with the given verbs on secrets (and events: create
// when events is true) in ns, and returns its client and name.
func user(t *testing.T, ns string, secretVerbs []string, events bool) (*kube.Client, string) {
	t.Helper()
	ctx := context.Background()
	userN++
	name := fmt.Sprintf("user-%s-%d", ns, userN)
	rules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: secretVerbs}}
	if events {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}})
	}
	if _, err := env.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: name, APIGroup: "rbac.authorization.k8s.io"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The apiserver's RBAC authorizer learns of a new binding through its informer, a moment
	// later: ask it (as the admin, so the user's audit log stays the test's) until every verb is
	// granted, or a test's first request meets a 403 that is only that delay.
	for _, verb := range secretVerbs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err := env.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
				User: name, ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "secrets"}}}, metav1.CreateOptions{})
			if err == nil && r.Status.Allowed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("RBAC %s on secrets for %s not in effect after 10 s: %v", verb, name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cfg, err := env.User(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, name
}

func namespace(t *testing.T) string {
	ns, err := env.Namespace(context.Background(), "kube")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func createSecret(t *testing.T, ns string, data map[string][]byte) *corev1.Secret {
	ctrl := true
	s, err := env.Client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "vc-certs", Labels: map[string]string{"app": "vcluster", "vcluster-name": "vc"},
			Annotations:     map[string]string{"keep": "me"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: "vc", UID: "0d3a", Controller: &ctrl}}},
		Data: data,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var all = []string{"get", "update", "delete"}

func TestGetAbsentSecret(t *testing.T) {
	ns := namespace(t)
	c, _ := user(t, ns, all, false)
	s, err := (&kube.SecretStore{Client: c, Namespace: ns, Name: "vc-certs"}).Get(context.Background())
	if s != nil || err != nil {
		t.Fatalf("Get = %v, %v; want nil, nil", s, err)
	}
}

func TestRemoveKeysInOneUpdate(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	data := map[string][]byte{"ca.crt": []byte("ca")}
	for _, k := range pki.K0sLeafFiles {
		data[k] = []byte(k)
	}
	createSecret(t, ns, data)
	c, name := user(t, ns, all, false)
	store := &kube.SecretStore{Client: c, Namespace: ns, Name: "vc-certs"}
	s, err := store.Get(ctx)
	if err != nil || len(s.Data) != 15 {
		t.Fatalf("Get = %v, %v", s, err)
	}
	if err := store.RemoveKeys(ctx, s, pki.K0sLeafFiles, false); err != nil {
		t.Fatal(err)
	}
	got, _ := env.Client.CoreV1().Secrets(ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	// certguard writes back the server's own object: nothing but the keys and its annotation changes.
	if len(got.Data) != 1 || got.Labels["vcluster-name"] != "vc" || got.Annotations["keep"] != "me" ||
		len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != "0d3a" || got.Type != corev1.SecretTypeOpaque {
		t.Fatalf("after RemoveKeys: %d keys, labels %v, annotations %v, owners %v", len(got.Data), got.Labels, got.Annotations, got.OwnerReferences)
	}
	if !strings.HasSuffix(got.Annotations[pki.LastRepairAnnotation], " leaves") {
		t.Fatalf("last-repair annotation %q", got.Annotations[pki.LastRepairAnnotation])
	}
	if verbs := verbsOf(t, name); verbs != "get,update" {
		t.Fatalf("requests %v, want exactly get,update", verbs)
	}
	if st := store.ServerTime(); st.IsZero() || time.Since(st).Abs() > 3*time.Second {
		t.Fatalf("ServerTime = %v", st)
	}
}

func TestConcurrentUpdateIsAConflict(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	createSecret(t, ns, map[string][]byte{"server.crt": []byte("old"), "ca.crt": []byte("ca")})
	c, _ := user(t, ns, all, false)
	store := &kube.SecretStore{Client: c, Namespace: ns, Name: "vc-certs"}
	s, err := store.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Another writer (vcluster) updates the Secret between our GET and our write.
	other, _ := env.Client.CoreV1().Secrets(ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	other.Data["server.crt"] = []byte("new")
	if _, err := env.Client.CoreV1().Secrets(ns).Update(ctx, other, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := store.RemoveKeys(ctx, s, []string{"server.crt"}, false); !errors.Is(err, pki.ErrSecretChanged) {
		t.Fatalf("RemoveKeys after a concurrent update = %v, want ErrSecretChanged", err)
	}
	if err := store.Delete(ctx, s, false); !errors.Is(err, pki.ErrSecretChanged) {
		t.Fatalf("Delete after a concurrent update = %v, want ErrSecretChanged", err)
	}
	got, _ := env.Client.CoreV1().Secrets(ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	if string(got.Data["server.crt"]) != "new" {
		t.Fatal("the concurrent write was lost")
	}
	// Read again, and the same calls go through.
	s, _ = store.Get(ctx)
	if err := store.Delete(ctx, s, false); err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(ctx, s, false); err != nil {
		t.Fatalf("deleting a deleted Secret: %v", err)
	}
}

func TestForbiddenUpdateSaysWhat(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	createSecret(t, ns, map[string][]byte{"server.crt": []byte("x")})
	c, _ := user(t, ns, []string{"get"}, false)
	store := &kube.SecretStore{Client: c, Namespace: ns, Name: "vc-certs"}
	s, err := store.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = store.RemoveKeys(ctx, s, []string{"server.crt"}, false)
	if err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), `RBAC "update"`) {
		t.Fatalf("RemoveKeys without update = %v", err)
	}
}

func TestAPIDownFailsAfterBoundedRetry(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c, err := kube.NewClient(&rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = (&kube.SecretStore{Client: c, Namespace: "x", Name: "vc-certs", Retry: 2 * time.Second}).Get(context.Background())
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Get with the API down = %v", err)
	}
	if took < time.Second || took > 6*time.Second {
		t.Fatalf("gave up after %s, want about the 2 s retry budget", took)
	}
	t.Logf("API down: gave up after %s: %v", took.Round(time.Millisecond), err)
}

func TestEventsBestEffort(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	denied, _ := user(t, ns, []string{"get"}, false)
	ev := &kube.Events{Client: denied, Namespace: ns, Pod: "vc-0", Log: log}
	ev.Emit(ctx, "Warning", kube.ReasonRefused, "first")
	ev.Emit(ctx, "Warning", kube.ReasonRefused, "second")
	if n := strings.Count(logs.String(), "events: create"); n != 1 {
		t.Fatalf("403 logged %d times, want once:\n%s", n, logs.String())
	}

	allowed, _ := user(t, ns, []string{"get"}, true)
	(&kube.Events{Client: allowed, Namespace: ns, Pod: "vc-0", Log: log}).Emit(ctx, "Normal", kube.ReasonRepaired, "repaired")
	list, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Reason != string(kube.ReasonRepaired) || list.Items[0].InvolvedObject.Name != "vc-0" {
		t.Fatalf("events = %+v", list.Items)
	}
}

func TestWatchFollowsTheSecret(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t)
	c, _ := user(t, ns, []string{"get", "list", "watch"}, false)
	seen := make(chan string, 20)
	go (&kube.SecretStore{Client: c, Namespace: ns, Name: "vc-certs"}).Watch(ctx, func(s *pki.Secret) {
		if s == nil {
			seen <- "absent"
			return
		}
		seen <- string(s.Data["v"])
	}, func(err error) { seen <- "error: " + err.Error() })
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("saw %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing seen, want %q", want)
		}
	}
	expect("absent")
	createSecret(t, ns, map[string][]byte{"v": []byte("1")})
	expect("1")
	s, _ := env.Client.CoreV1().Secrets(ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	s.Data["v"] = []byte("2")
	env.Client.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
	expect("2")
	env.Client.CoreV1().Secrets(ns).Delete(ctx, "vc-certs", metav1.DeleteOptions{})
	expect("absent")
	createSecret(t, ns, map[string][]byte{"v": []byte("3")})
	expect("3")
	// A Secret of another name in the namespace is not this one.
	env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, metav1.CreateOptions{})
	select {
	case got := <-seen:
		t.Fatalf("saw %q for another Secret", got)
	case <-time.After(500 * time.Millisecond):
	}
}

// verbsOf is the verbs of user's requests, in order, from the apiserver's audit log.
func verbsOf(t *testing.T, user string) string {
	t.Helper()
	reqs, err := env.Requests(user)
	if err != nil {
		t.Fatal(err)
	}
	var verbs []string
	for _, r := range reqs {
		verbs = append(verbs, r.Verb)
	}
	return strings.Join(verbs, ",")
}
