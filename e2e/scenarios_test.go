package e2e

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// expiredText is what every client of a vcluster hit by loft-sh/vcluster#2628 sees.
const expiredText = "x509: certificate has expired or is not yet valid"

// expiredLeaves is a PKI whose k0s leaves expired 35 days ago (issued 400 days ago for a year),
// under a CA that is good for 9 more years: the state of loft-sh/vcluster#2628.
func expiredLeaves() pkigen.Options {
	return pkigen.Options{K0sIssued: time.Now().Add(-400 * day)}
}

// expiredCA is a PKI whose three CAs (and vcluster's leaves) expired a year ago.
func expiredCA() pkigen.Options {
	return pkigen.Options{CAIssued: time.Now().Add(-11 * pkigen.Year)}
}

// TestLeavesExpired_NoCertguard_FailsLike2628 reproduces loft-sh/vcluster#2628: k0s keeps the
// expired leaves signed by vcluster's CA (CN kubernetes), vcluster writes them back from the
// Secret, and the apiserver serves an expired certificate.
func TestLeavesExpired_NoCertguard_FailsLike2628(t *testing.T) {
	t.Parallel()
	s := newScenario(t, expiredLeaves())
	orig := s.pki.Files["server.crt"]
	s.bootFails(expiredText + ": current time")
	if !bytes.Equal(s.read("server.crt"), orig) {
		t.Error("k0s re-issued server.crt, but k0s < v1.35.1 keeps leaves of a CA it does not own")
	}
	if !bytes.Equal(s.secretData()["server.crt"], orig) {
		t.Error("the Secret no longer holds the expired server.crt")
	}
}

// TestDeleteSecretAndRestart_StillFails_1766 follows the advice of loft-sh/vcluster#1766 ("delete
// the certificate secret and restart"): vcluster rebuilds the Secret from the expired files on
// the volume (extraFiles), which is exactly what #2628 reports.
func TestDeleteSecretAndRestart_StillFails_1766(t *testing.T) {
	t.Parallel()
	s := newScenario(t, expiredLeaves())
	s.deleteSecret()
	s.bootFails(expiredText)
	data := s.secretData()
	if data == nil {
		t.Fatal("vcluster did not recreate the Secret")
	}
	if !bytes.Equal(data["server.crt"], s.pki.Files["server.crt"]) {
		t.Error("the recreated Secret does not hold the expired server.crt from the disk")
	}
}

// TestLeavesExpired_CertguardRepair_ServesAndClientsKeepWorking is the cure, in real time: a
// control plane serves, a service-account token and a client certificate are issued, the k0s
// leaves expire (#2628 reproduced on the same data dir), certguard repairs, and the next start
// serves with the same CA and sa keys, new leaves, and both old credentials still working.
//
// The token is a real TokenRequest answered by the apiserver of the first boot (signed with
// sa.key), not one made by the test.
func TestLeavesExpired_CertguardRepair_ServesAndClientsKeepWorking(t *testing.T) {
	// The first boot runs before t.Parallel, while the other tests wait, so that the leaves can
	// expire 45 s after they were made without racing the other boots for a slot.
	const validFor = 45 * time.Second
	now := time.Now()
	s := newScenario(t, pkigen.Options{Now: now, K0sIssued: now, K0sLifetime: pkigen.Backdate + validFor})
	orig := maps.Clone(s.pki.Files)
	notAfter := cert(t, orig["server.crt"]).NotAfter

	cp := s.boot()
	admin, err := AdminConfig(s.node.PKIDir())
	if err != nil {
		t.Fatal(err)
	}
	ac := kubernetes.NewForConfigOrDie(admin)
	ctx := context.Background()
	if _, err := ac.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := ac.CoreV1().ServiceAccounts("default").CreateToken(ctx, "e2e", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token
	// A user's client certificate, signed by the CA before the repair (as `vcluster connect` or an
	// admin would hand out).
	userCrt, userKey, err := s.pki.Issue(s.pki.CAs["ca"], pkigen.Leaf{CN: []string{"e2e-user"}, O: []string{"e2e-group"},
		Client: true, Issued: now, Lifetime: pkigen.Year})
	if err != nil {
		t.Fatal(err)
	}
	byToken := func() kubernetes.Interface {
		return clientFor(t, s.node.PKIDir(), func(c *rest.Config) { c.BearerToken = token })
	}
	byCert := func() kubernetes.Interface {
		return clientFor(t, s.node.PKIDir(), func(c *rest.Config) { c.CertData, c.KeyData = userCrt, userKey })
	}
	for name, c := range map[string]kubernetes.Interface{"token": byToken(), "client certificate": byCert()} {
		if _, err := whoami(c); err != nil {
			t.Fatalf("before the repair, the %s does not authenticate: %v", name, err)
		}
	}
	cp.Stop()
	if left := time.Until(notAfter); left < 5*time.Second {
		t.Fatalf("the first boot took too long: the leaves expire in %s; raise validFor", left)
	}

	t.Parallel()
	time.Sleep(time.Until(notAfter) + time.Second)
	t.Logf("the k0s leaves expired at %s", notAfter.UTC().Format(time.RFC3339))
	s.bootFails(expiredText) // #2628, on the same data dir and Secret

	r := s.repair(0)
	if d := decision(r); d != pki.DecideLeaves {
		t.Fatalf("certguard decided %q, want %q:\n%s", d, pki.DecideLeaves, r.Stderr)
	}
	cp = s.boot()
	if cp.Attempts != 1 {
		t.Errorf("vcluster's initialize() ran %d times: UpdateSecretWithK0sCerts failed and retried (see %s)", cp.Attempts, s.node.LogDir)
	}

	// The CA and the service-account keys are the same bytes, on disk and in the Secret.
	sec := s.secretData()
	for _, f := range []string{"ca.crt", "ca.key", "sa.pub", "sa.key", "front-proxy-ca.crt", "etcd/ca.crt"} {
		if !bytes.Equal(s.read(f), orig[f]) {
			t.Errorf("%s changed on disk", f)
		}
		if !bytes.Equal(sec[pki.SecretKey(f)], orig[f]) {
			t.Errorf("%s changed in the Secret", f)
		}
	}
	ca := cert(t, orig["ca.crt"])
	for _, l := range k0sLeafTable {
		c := cert(t, s.read(l.name+".crt"))
		if err := c.CheckSignatureFrom(ca); err != nil {
			t.Errorf("%s.crt is not signed by the old CA: %v", l.name, err)
		}
		if c.NotAfter.Before(time.Now().Add(364 * day)) {
			t.Errorf("%s.crt expires %s: not a fresh one-year certificate", l.name, c.NotAfter)
		}
		if bytes.Equal(s.read(l.name+".crt"), orig[l.name+".crt"]) {
			t.Errorf("%s.crt was not re-issued", l.name)
		}
	}
	// Both credentials made before the repair still authenticate against the new apiserver.
	if u, err := whoami(byToken()); err != nil {
		t.Errorf("the service-account token issued before the repair is rejected: %v", err)
	} else if u.Username != "system:serviceaccount:default:e2e" {
		t.Errorf("the token authenticates as %q", u.Username)
	}
	if u, err := whoami(byCert()); err != nil {
		t.Errorf("the client certificate signed before the repair is rejected: %v", err)
	} else if u.Username != "e2e-user" || !slices.Contains(u.Groups, "e2e-group") {
		t.Errorf("the client certificate authenticates as %q %v", u.Username, u.Groups)
	}
	// The Secret holds the new k0s files, equal to the disk: no drift, no retry loop next time.
	for _, f := range K0sFiles {
		if !bytes.Equal(sec[f], s.read(f)) {
			t.Errorf("Secret key %s differs from the disk after the boot", f)
		}
	}
}

// TestCAExpired_FullReset compares three starts of a vcluster whose CAs expired: without
// certguard (fails), with `certguard repair` under auto (full reset), and with the manual
// workaround done by hand (`mv pki pki.old`, delete the Secret). certguard must end where the
// manual workaround ends, and keep every old byte in pki.old/<ts>/.
func TestCAExpired_FullReset(t *testing.T) {
	t.Parallel()
	type result struct {
		files, keys []string
		caCN        string
	}
	var byCertguard, byHand result
	after := func(s *scenario) result {
		var r result
		m := s.manifest()
		r.files = slices.Sorted(maps.Keys(m.Disk))
		r.keys = slices.Sorted(maps.Keys(m.Secret))
		r.caCN = cert(s.t, s.read("ca.crt")).Subject.CommonName
		return r
	}
	t.Run("group", func(t *testing.T) {
		t.Run("no-certguard", func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, expiredCA())
			// k0s re-issues the etcd leaves under the expired etcd CA; its etcd health check fails.
			s.bootFails(expiredText)
		})
		t.Run("certguard-auto", func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, expiredCA())
			before := s.manifest()
			oldCA := s.pki.Files["ca.crt"]
			r := s.repair(0)
			if d := decision(r); d != pki.DecideFull {
				t.Fatalf("certguard decided %q, want %q:\n%s", d, pki.DecideFull, r.Stderr)
			}
			if s.secretData() != nil {
				t.Error("the Secret still exists after a full reset")
			}
			// The new pki dir holds only the service-account pair, as vcluster's rotate-ca keeps it.
			if got, err := TakeManifest(s.node.PKIDir(), nil); err != nil || !slices.Equal(slices.Sorted(maps.Keys(got.Disk)), []string{"sa.key", "sa.pub"}) ||
				got.Disk["sa.key"] != before.Disk["sa.key"] || got.Disk["sa.pub"] != before.Disk["sa.pub"] {
				t.Errorf("the pki dir after a full reset: %v, %v; want sa.key and sa.pub as they were", got.Files(), err)
			}
			// Every old file is in pki.old/<ts>/pki, byte for byte, and the Secret in secret.json.
			dirs, _ := filepath.Glob(filepath.Join(s.backupDir(), "*", "pki"))
			if len(dirs) != 1 {
				t.Fatalf("want one backup pki dir, found %v", dirs)
			}
			moved, err := TakeManifest(dirs[0], nil)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(moved.Disk, before.Disk) {
				t.Errorf("pki.old/<ts>/pki differs from the pki dir before the repair:\nbefore %s\nafter  %s", before.Files(), moved.Files())
			}
			if lost, n, err := before.Lost(s.node.PKIDir(), s.backupDir(), nil); err != nil || len(lost) > 0 {
				t.Errorf("%d bytes lost (%v): %v", n, err, lost)
			}
			s.boot()
			if bytes.Equal(s.read("ca.crt"), oldCA) {
				t.Error("the CA was not replaced")
			}
			if c := cert(t, s.read("ca.crt")); time.Now().After(c.NotAfter) {
				t.Error("the new CA is expired")
			}
			sec := s.secretData()
			for _, f := range K0sFiles {
				if !bytes.Equal(sec[f], s.read(f)) {
					t.Errorf("Secret key %s differs from the disk after the boot", f)
				}
			}
			byCertguard = after(s)
		})
		t.Run("by-hand", func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, expiredCA())
			if err := os.Rename(s.node.PKIDir(), s.node.PKIDir()+".old"); err != nil {
				t.Fatal(err)
			}
			s.deleteSecret()
			s.boot()
			byHand = after(s)
		})
	})
	if t.Failed() {
		return
	}
	if !slices.Equal(byCertguard.files, byHand.files) {
		t.Errorf("after the boot, the pki dirs differ:\ncertguard %v\nby hand   %v", byCertguard.files, byHand.files)
	}
	if !slices.Equal(byCertguard.keys, byHand.keys) {
		t.Errorf("after the boot, the Secrets' keys differ:\ncertguard %v\nby hand   %v", byCertguard.keys, byHand.keys)
	}
	if byCertguard.caCN != byHand.caCN || byCertguard.caCN != "kubernetes" {
		t.Errorf("new CA CN: certguard %q, by hand %q, want kubernetes (vcluster's)", byCertguard.caCN, byHand.caCN)
	}
}

// TestSecretDeletedBeforehand_DiskExpired_RepairBoots: the user already tried #1766's advice
// and deleted the Secret; certguard repairs the disk alone, and vcluster rebuilds the Secret
// from what is left.
func TestSecretDeletedBeforehand_DiskExpired_RepairBoots(t *testing.T) {
	t.Parallel()
	s := newScenario(t, expiredLeaves())
	s.deleteSecret()
	before := s.manifest()
	r := s.repair(0)
	if d := decision(r); d != pki.DecideLeaves {
		t.Fatalf("certguard decided %q, want %q:\n%s", d, pki.DecideLeaves, r.Stderr)
	}
	if s.secretData() != nil {
		t.Error("certguard created a Secret")
	}
	if lost, n, err := before.Lost(s.node.PKIDir(), s.backupDir(), nil); err != nil || len(lost) > 0 {
		t.Errorf("%d bytes lost (%v): %v", n, err, lost)
	}
	s.boot()
	sec := s.secretData()
	if sec == nil {
		t.Fatal("vcluster did not rebuild the Secret")
	}
	for _, f := range K0sFiles {
		if !bytes.Equal(sec[f], s.read(f)) {
			t.Errorf("Secret key %s differs from the disk after the boot", f)
		}
	}
	if !bytes.Equal(s.read("ca.crt"), s.pki.Files["ca.crt"]) {
		t.Error("ca.crt changed")
	}
}

// TestDrift: the Secret and the disk disagree. vcluster writes the Secret over the disk, so the
// Secret decides; whatever certguard decides, the next start serves.
func TestDrift(t *testing.T) {
	t.Parallel()
	now := time.Now()
	t.Run("secret-expired-disk-fresh", func(t *testing.T) {
		// Someone re-issued the leaves on the volume by hand; the Secret still has the expired ones.
		t.Parallel()
		s := newScenario(t, expiredLeaves())
		if err := pkigen.WriteDir(s.node.PKIDir(), issueK0sLeaves(t, s.pki, now)); err != nil {
			t.Fatal(err)
		}
		checkDrift(t, s, pki.DecideLeaves)
	})
	t.Run("secret-fresh-disk-expired", func(t *testing.T) {
		// The volume has old leaves, the Secret good ones (e.g. a restored volume snapshot).
		t.Parallel()
		s := newScenario(t, pkigen.Options{})
		if err := pkigen.WriteDir(s.node.PKIDir(), issueK0sLeaves(t, s.pki, now.Add(-400*day))); err != nil {
			t.Fatal(err)
		}
		checkDrift(t, s, pki.DecideNothing)
	})
	t.Run("different-ca", func(t *testing.T) {
		// The Secret belongs to one PKI (expired leaves), the volume to another (a different CA).
		t.Parallel()
		s := newScenario(t, expiredLeaves())
		other, err := pkigen.Generate(pkigen.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(s.node.PKIDir()); err != nil {
			t.Fatal(err)
		}
		if err := pkigen.WriteDir(s.node.PKIDir(), other.Files); err != nil {
			t.Fatal(err)
		}
		checkDrift(t, s, "")
	})
	t.Run("partial-k0s-keys", func(t *testing.T) {
		// Half of the k0s keys were removed from the Secret by hand (research §5 pitfall): without
		// certguard vcluster's UpdateSecretWithK0sCerts loops; certguard must still make it boot.
		t.Parallel()
		half := func(s *scenario) {
			data := s.secretData()
			for _, f := range K0sFiles[:7] {
				delete(data, f)
			}
			s.putSecret(data)
		}
		t.Run("no-certguard", func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, expiredLeaves())
			half(s)
			s.bootFails("it was already updated")
		})
		t.Run("certguard", func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, expiredLeaves())
			half(s)
			checkDrift(t, s, pki.DecideLeaves)
		})
	})
}

// checkDrift runs certguard (want: its decision, "" for any), checks that no byte was lost, and
// requires the next start to serve with the k0s files of the Secret equal to the disk.
func checkDrift(t *testing.T, s *scenario, want pki.Decision) {
	t.Helper()
	before := s.manifest()
	r := s.repair(0)
	d := decision(r)
	t.Logf("certguard decided %q: %s", d, findings(r.Outcome.Plan.Why))
	if want != "" && d != want {
		t.Fatalf("certguard decided %q, want %q:\n%s", d, want, r.Stderr)
	}
	if lost, n, err := before.Lost(s.node.PKIDir(), s.backupDir(), s.secretData()); err != nil || len(lost) > 0 {
		t.Errorf("%d bytes lost (%v): %v", n, err, lost)
	}
	if d == pki.DecideNothing {
		// Nothing to repair may still set the Secret's kubeconfig servers for vcluster's
		// syncer: those keys, and nothing else, may change.
		after, want := s.manifest(), before
		want.Secret = maps.Clone(before.Secret)
		for _, st := range r.Outcome.Plan.Steps {
			if st.Action == pki.ActionSetConfServer {
				want.Secret[st.Keys[0]] = after.Secret[st.Keys[0]]
			}
		}
		if !want.Equal(after) {
			t.Error("certguard decided nothing but changed the disk or the Secret")
		}
	}
	s.boot()
	sec := s.secretData()
	for _, f := range K0sFiles {
		if !bytes.Equal(sec[f], s.read(f)) && !strings.HasSuffix(f, ".conf") {
			t.Errorf("Secret key %s differs from the disk after the boot", f)
		}
	}
}

// TestClockSkew_StartsAndDestroysNothing: certificates whose NotBefore lies in the future are
// what a node with a clock behind sees (k0sproject/k0s#1766). That is not expiry, and nothing
// stops the start: certguard changes nothing and lets it go on (exit 0, issue 18; it refused
// with exit 3 before, which blocked the pod until NTP was fixed), saying repair-held.
func TestClockSkew_StartsAndDestroysNothing(t *testing.T) {
	t.Parallel()
	future := time.Now().Add(2 * time.Hour)
	for name, opts := range map[string]pkigen.Options{
		"leaves-from-the-future":     {K0sIssued: future},
		"everything-from-the-future": {CAIssued: future, K0sIssued: future},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newScenario(t, opts)
			before := s.manifest()
			r := s.repair(0)
			if d := decision(r); d != pki.DecideNothing {
				t.Errorf("decision %s, want nothing", d)
			}
			if r.Outcome != nil {
				if _, ok := r.Outcome.Plan.Has(pki.CodeRepairHeld); !ok {
					t.Errorf("the plan does not say repair-held: %v", r.Outcome.Plan.Why)
				}
			}
			if !strings.Contains(r.Stderr, "clock") {
				t.Errorf("the warning does not mention the clock:\n%s", r.Stderr)
			}
			if !before.Equal(s.manifest()) {
				t.Error("the disk or the Secret changed (SHA-256 manifests differ)")
			}
			if _, err := os.Stat(s.backupDir()); !os.IsNotExist(err) {
				t.Errorf("a run that changed nothing wrote %s", s.backupDir())
			}
		})
	}
}

// TestHealthy_NoWritesOneGetBoots: a healthy vcluster that has booted before (so that disk and
// Secret drift the way vcluster itself makes them drift). certguard costs one GET of the Secret
// and writes nothing; the next start serves.
func TestHealthy_NoWritesOneGetBoots(t *testing.T) {
	t.Parallel()
	s := newScenario(t, pkigen.Options{})
	s.boot().Stop()
	before := s.manifest()
	r := s.repair(0)
	if d := decision(r); d != pki.DecideNothing {
		t.Fatalf("certguard decided %q on a healthy PKI:\n%s", d, r.Stderr)
	}
	if !before.Equal(s.manifest()) {
		t.Error("certguard changed the disk or the Secret of a healthy vcluster")
	}
	if _, err := os.Stat(s.backupDir()); !os.IsNotExist(err) {
		t.Errorf("a healthy run wrote %s", s.backupDir())
	}
	// The audit log is written when the response completes: give it a moment, then count.
	var reqs []string
	for deadline := time.Now().Add(3 * time.Second); ; {
		evs, err := env.Requests(s.user)
		if err != nil {
			t.Fatal(err)
		}
		reqs = nil
		for _, e := range evs {
			path, _, _ := strings.Cut(e.RequestURI, "?") // client-go adds ?timeout=
			reqs = append(reqs, e.Verb+" "+path)
		}
		if len(reqs) >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := "get /api/v1/namespaces/" + s.node.Namespace + "/secrets/" + s.node.SecretName()
	if len(reqs) != 1 || reqs[0] != want {
		t.Errorf("certguard's requests: %q, want exactly [%q]", reqs, want)
	}
	s.boot()
}

// TestModelMatchesCertguardLayout cross-checks the model's upstream tables against certguard's:
// a disagreement would make one of them wrong about vcluster.
func TestModelMatchesCertguardLayout(t *testing.T) {
	t.Parallel()
	if !slices.Equal(slices.Sorted(slices.Values(K0sFiles)), pki.K0sLeafFiles) {
		t.Errorf("vcluster's K0sFiles %v != certguard's K0sLeafFiles %v", K0sFiles, pki.K0sLeafFiles)
	}
	for file, key := range certMap {
		if got := pki.SecretKey(file); got != key {
			t.Errorf("certMap maps %s to %s, certguard to %s", file, key, got)
		}
		if got := pki.FilePath(key); got != file {
			t.Errorf("certMap maps %s back to %s, certguard to %s", key, file, got)
		}
	}
}

// TestCAExpiresWhileInUse_FullResetKeepsDataAndTokens: a vcluster in use whose CAs
// expire (in real time, 45 s after they were made). The next start fails; certguard's auto
// strategy resets the PKI; the start after serves with a new CA on the same etcd data, and the
// service-account token issued before still authenticates: the reset kept sa.key/sa.pub.
func TestCAExpiresWhileInUse_FullResetKeepsDataAndTokens(t *testing.T) {
	// Boot before t.Parallel: see TestLeavesExpired_CertguardRepair_ServesAndClientsKeepWorking.
	const validFor = 45 * time.Second
	now := time.Now()
	s := newScenario(t, pkigen.Options{Now: now, CAIssued: now, CALifetime: validFor, K0sIssued: now})
	caNotAfter := cert(t, s.pki.Files["ca.crt"]).NotAfter

	cp := s.boot()
	admin, err := AdminConfig(s.node.PKIDir())
	if err != nil {
		t.Fatal(err)
	}
	ac := kubernetes.NewForConfigOrDie(admin)
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "survivor"}, Data: map[string]string{"k": "v"}}
	if _, err := ac.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "e2e"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := ac.CoreV1().ServiceAccounts("default").CreateToken(ctx, "e2e", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cp.Stop()
	if left := time.Until(caNotAfter); left < 5*time.Second {
		t.Fatalf("the first boot took too long: the CAs expire in %s; raise validFor", left)
	}

	t.Parallel()
	time.Sleep(time.Until(caNotAfter) + time.Second)
	s.bootFails(expiredText)
	r := s.repair(0)
	if d := decision(r); d != pki.DecideFull {
		t.Fatalf("certguard decided %q, want %q:\n%s", d, pki.DecideFull, r.Stderr)
	}
	if r.Outcome.Plan.Breaks == "" {
		t.Error("the full plan does not say what it breaks")
	}
	s.boot()
	ac = kubernetes.NewForConfigOrDie(must(AdminConfig(s.node.PKIDir())))
	got, err := ac.CoreV1().ConfigMaps("default").Get(ctx, "survivor", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Errorf("the cluster's data did not survive the full reset: %v", err)
	}
	// certguard keeps sa.key/sa.pub through the reset and vcluster's generateCertificates
	// (kubeadm's CreateServiceAccountKeyAndPublicKeyFiles) reuses them: the token issued before
	// the reset still authenticates, against the new CA's serving certificate.
	if u, err := whoami(clientFor(t, s.node.PKIDir(), func(c *rest.Config) { c.BearerToken = tr.Status.Token })); err != nil ||
		u.Username != "system:serviceaccount:default:e2e" {
		t.Errorf("a token issued before the full reset: %v (user %q), want it still valid", err, u.Username)
	}
}

// TestLeavesDue_RepairedBeforeExpiry is certguard's everyday job: the k0s leaves have 65 days
// left (within --renew-before 120d); certguard renews them before anything breaks.
func TestLeavesDue_RepairedBeforeExpiry(t *testing.T) {
	t.Parallel()
	s := newScenario(t, pkigen.Options{K0sIssued: time.Now().Add(-300 * day)})
	before := s.manifest()
	r := s.repair(0)
	if d := decision(r); d != pki.DecideLeaves {
		t.Fatalf("certguard decided %q, want %q:\n%s", d, pki.DecideLeaves, r.Stderr)
	}
	if lost, n, err := before.Lost(s.node.PKIDir(), s.backupDir(), s.secretData()); err != nil || len(lost) > 0 {
		t.Errorf("%d bytes lost (%v): %v", n, err, lost)
	}
	s.boot()
	if c := cert(t, s.read("server.crt")); c.NotAfter.Before(time.Now().Add(364 * day)) {
		t.Errorf("server.crt expires %s: not renewed", c.NotAfter)
	}
}

// TestVolumeRecreated_SecretExpired: the data volume is not persistent (emptyDir) or was lost:
// every start finds an empty pki dir while the Secret holds expired k0s leaves, which vcluster
// writes to the volume. certguard judges the Secret alone (it is what the start will use),
// removes the 14 leaf keys from it after a backup, and the start serves. The earlier rule
// ("change nothing on an empty volume") crash-looped such a cluster for ever.
func TestVolumeRecreated_SecretExpired(t *testing.T) {
	t.Parallel()
	s := newScenario(t, expiredLeaves())
	if err := os.RemoveAll(s.node.PKIDir()); err != nil {
		t.Fatal(err)
	}
	before := s.secretData()
	r := s.repair(0)
	if d := decision(r); d != pki.DecideLeaves {
		t.Fatalf("on an empty volume with an expired Secret certguard decided %q, want %q:\n%s", d, pki.DecideLeaves, r.Stderr)
	}
	after := s.secretData()
	for k := range before {
		_, kept := after[k]
		if slices.Contains(K0sFiles, k) == kept {
			t.Errorf("Secret key %s: kept=%v after the repair", k, kept)
		}
	}
	if _, err := os.Stat(s.node.PKIDir()); err == nil {
		t.Error("certguard created the pki dir: only the Secret may change when the volume holds no PKI")
	}
	s.boot()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestHalfRepair_StillFails shows why certguard removes the k0s leaves from the disk AND the
// Secret (research §5): either half alone leaves the expired leaves in place at the next start,
// and the harness sees the same failure as #2628. A certguard that did only half would fail here.
func TestHalfRepair_StillFails(t *testing.T) {
	t.Parallel()
	t.Run("disk-only", func(t *testing.T) {
		// vcluster's downloadCertsFromSecret writes them back.
		t.Parallel()
		s := newScenario(t, expiredLeaves())
		for _, f := range K0sFiles {
			if err := os.Remove(filepath.Join(s.node.PKIDir(), f)); err != nil {
				t.Fatal(err)
			}
		}
		s.bootFails(expiredText)
	})
	t.Run("secret-only", func(t *testing.T) {
		// k0s keeps the expired files on disk, and UpdateSecretWithK0sCerts puts them back.
		t.Parallel()
		s := newScenario(t, expiredLeaves())
		data := s.secretData()
		for _, f := range K0sFiles {
			delete(data, f)
		}
		s.putSecret(data)
		s.bootFails(expiredText)
		if !bytes.Equal(s.secretData()["server.crt"], s.pki.Files["server.crt"]) {
			t.Error("UpdateSecretWithK0sCerts did not put the expired server.crt back into the Secret")
		}
	})
}
