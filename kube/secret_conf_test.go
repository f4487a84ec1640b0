package kube_test

import (
	"context"
	"errors"
	"testing"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSetKeysInOneUpdate: against the real apiserver, SetKeys changes exactly the keys given, in
// one update carrying the read resourceVersion; a dry run stores nothing; a concurrent writer
// makes it ErrSecretChanged and keeps the other write.
func TestSetKeysInOneUpdate(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	createSecret(t, ns, map[string][]byte{"ca.crt": []byte("ca"), "admin.conf": []byte("old admin"), "ccm.conf": []byte("old ccm")})
	c, name := user(t, ns, all, false)
	store := &kube.SecretStore{Client: c, Namespace: ns, Name: "vc-certs"}
	s, err := store.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string][]byte{"admin.conf": []byte("new admin"), "ccm.conf": []byte("new ccm")}
	if err := store.SetKeys(ctx, s, set, true); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	got, _ := env.Client.CoreV1().Secrets(ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	if string(got.Data["admin.conf"]) != "old admin" || got.ResourceVersion != s.ResourceVersion {
		t.Fatal("the dry run stored something")
	}
	if err := store.SetKeys(ctx, s, set, false); err != nil {
		t.Fatal(err)
	}
	got, _ = env.Client.CoreV1().Secrets(ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	if len(got.Data) != 3 || string(got.Data["admin.conf"]) != "new admin" || string(got.Data["ccm.conf"]) != "new ccm" ||
		string(got.Data["ca.crt"]) != "ca" || got.Labels["vcluster-name"] != "vc" || got.Annotations["keep"] != "me" ||
		got.Annotations[pki.LastRepairAnnotation] != "" || len(got.OwnerReferences) != 1 || got.Type != corev1.SecretTypeOpaque {
		t.Fatalf("after SetKeys: %d keys, labels %v, annotations %v", len(got.Data), got.Labels, got.Annotations)
	}
	if verbs := verbsOf(t, name); verbs != "get,update,update" {
		t.Fatalf("requests %v, want get, update (dry run), update", verbs)
	}

	// The write above changed the resourceVersion: the old read is stale now.
	if err := store.SetKeys(ctx, s, map[string][]byte{"admin.conf": []byte("stale")}, false); !errors.Is(err, pki.ErrSecretChanged) {
		t.Fatalf("SetKeys with a stale read = %v, want ErrSecretChanged", err)
	}
	s, _ = store.Get(ctx)
	other, _ := env.Client.CoreV1().Secrets(ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	other.Data["admin.conf"] = []byte("vcluster's")
	if _, err := env.Client.CoreV1().Secrets(ns).Update(ctx, other, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := store.SetKeys(ctx, s, map[string][]byte{"admin.conf": []byte("mine")}, false); !errors.Is(err, pki.ErrSecretChanged) {
		t.Fatalf("SetKeys after a concurrent update = %v, want ErrSecretChanged", err)
	}
	got, _ = env.Client.CoreV1().Secrets(ns).Get(ctx, "vc-certs", metav1.GetOptions{})
	if string(got.Data["admin.conf"]) != "vcluster's" {
		t.Fatal("the concurrent write was lost")
	}
}
