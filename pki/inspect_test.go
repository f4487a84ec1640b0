package pki_test

import (
	"slices"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

func TestClassifyBoundaries(t *testing.T) {
	nb, na := now.Add(-day), now.Add(120*day)
	cases := []struct {
		name string
		at   time.Time
		want pki.Status
	}{
		{"one second before NotBefore", nb.Add(-time.Second), pki.StatusNotYetValid},
		{"exactly NotBefore", nb, pki.StatusOK},
		{"renew-before plus one second", na.Add(-120*day - time.Second), pki.StatusOK},
		{"exactly renew-before", na.Add(-120 * day), pki.StatusDue},
		{"renew-before minus one second", na.Add(-120*day + time.Second), pki.StatusDue},
		{"exactly NotAfter is still valid", na, pki.StatusDue},
		{"one second after NotAfter", na.Add(time.Second), pki.StatusExpired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := pki.Classify(nb, na, c.at, 120*day); got != c.want {
				t.Fatalf("Classify at %s = %s, want %s", c.at, got, c.want)
			}
		})
	}
}

func TestInspectHealthy(t *testing.T) {
	p := genPKI(t, nil)
	r := inspect(t, writePKI(t, p.Files), p.SecretData())
	for _, f := range r.Files {
		if f.Status != pki.StatusOK {
			t.Errorf("%s: %s (%s), want ok", f.Path, f.Status, f.Reason)
		}
		if f.Drift != pki.DriftSame {
			t.Errorf("%s: drift %q, want same", f.Path, f.Drift)
		}
	}
	if f, ok := r.File("server.crt"); !ok || f.Cert == nil || f.Cert.IssuerCN != "kubernetes" || f.Source != pki.SourceSecret {
		t.Fatalf("server.crt row = %+v", f)
	}
}

func TestInspectProblems(t *testing.T) {
	base := genPKI(t, nil)
	other := genPKI(t, nil) // a second PKI: its keys and CA are foreign to base
	cases := []struct {
		name   string
		mutate func(files, secret map[string][]byte)
		path   string
		want   pki.Status
	}{
		{"truncated certificate", func(f, s map[string][]byte) { s["server.crt"] = s["server.crt"][:100] }, "server.crt", pki.StatusCorrupt},
		{"garbage in the Secret", func(f, s map[string][]byte) { s["ca.crt"] = []byte("hello") }, "ca.crt", pki.StatusCorrupt},
		{"key does not match", func(f, s map[string][]byte) { s["apiserver.key"] = other.Files["apiserver.key"] }, "apiserver.crt", pki.StatusKeyMismatch},
		{"sa.pub does not match sa.key", func(f, s map[string][]byte) { s["sa.pub"] = other.Files["sa.pub"] }, "sa.pub", pki.StatusKeyMismatch},
		{"issuer not found", func(f, s map[string][]byte) {
			s["admin.crt"], s["admin.key"] = other.Files["admin.crt"], other.Files["admin.key"]
		}, "admin.crt", pki.StatusUnknownIssuer},
		{"kubeconfig with a foreign client cert", func(f, s map[string][]byte) { s["ccm.conf"] = other.Files["ccm.conf"] }, "ccm.conf", pki.StatusUnknownIssuer},
		{"kubeconfig that is not one", func(f, s map[string][]byte) { s["ccm.conf"] = []byte("{]") }, "ccm.conf", pki.StatusCorrupt},
		{"CA key missing", func(f, s map[string][]byte) { delete(s, "ca.key"); delete(f, "ca.key") }, "ca.key", pki.StatusMissing},
		{"one k0s leaf missing", func(f, s map[string][]byte) { delete(s, "k0s-api.key"); delete(f, "k0s-api.key") }, "k0s-api.key", pki.StatusMissing},
		{"empty Secret value", func(f, s map[string][]byte) { s["etcd-ca.crt"] = nil }, "etcd/ca.crt", pki.StatusCorrupt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files, secret := clone(base.Files), base.SecretData()
			c.mutate(files, secret)
			r := inspect(t, writePKI(t, files), secret)
			f, ok := r.File(c.path)
			if !ok || f.Status != c.want {
				t.Fatalf("%s = %+v, want status %s", c.path, f, c.want)
			}
			if f.Detail == "" {
				t.Fatalf("%s: no reason given", c.path)
			}
		})
	}
}

func TestInspectDriftSecretWins(t *testing.T) {
	old := genPKI(t, expiredLeaves)
	fresh := genPKI(t, nil)
	files := clone(old.Files)
	// The disk has a corrupt server.crt, the Secret a good one: vcluster writes the Secret's.
	files["server.crt"] = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	secret := old.SecretData()
	secret["admin.crt"] = fresh.Files["admin.crt"]
	r := inspect(t, writePKI(t, files), secret)
	if f, _ := r.File("server.crt"); f.Status != pki.StatusExpired || f.Drift != pki.DriftDiffers || f.Source != pki.SourceSecret {
		t.Errorf("server.crt = %+v, want the Secret's expired cert, drift differs", f)
	}
	if f, _ := r.File("admin.crt"); f.Drift != pki.DriftDiffers || f.Newer != pki.SourceSecret {
		t.Errorf("admin.crt = %+v, want differs, secret newer", f)
	}
	delete(secret, "konnectivity.conf")
	r = inspect(t, writePKI(t, files), secret)
	if f, _ := r.File("konnectivity.conf"); f.Drift != pki.DriftDiskOnly || f.Source != pki.SourceDisk {
		t.Errorf("konnectivity.conf = %+v, want disk-only", f)
	}
}

func TestSecretKeyMapping(t *testing.T) {
	for path, key := range map[string]string{
		"ca.crt": "ca.crt", "etcd/ca.crt": "etcd-ca.crt", "etcd/healthcheck-client.key": "etcd-healthcheck-client.key",
		"apiserver-etcd-client.crt": "apiserver-etcd-client.crt", "etcd/jwt.key": "",
	} {
		if got := pki.SecretKey(path); got != key {
			t.Errorf("SecretKey(%s) = %q, want %q", path, got, key)
		}
		if key != "" {
			if got := pki.FilePath(key); got != path {
				t.Errorf("FilePath(%s) = %q, want %q", key, got, path)
			}
		}
	}
	if len(pki.K0sLeafFiles) != 14 || !slices.Contains(pki.K0sLeafFiles, "ccm.conf") || slices.Contains(pki.K0sLeafFiles, "admin.conf") {
		t.Fatalf("K0sLeafFiles = %v", pki.K0sLeafFiles)
	}
}

func TestResidual(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "<invalid>", 90 * time.Minute: "1h30m", 12 * day: "12d", 364 * day: "364d", 9*pkigen.Year + day: "9y",
		// Where Residual says more than ShortHumanDuration (0s, 2h, 1y), and under a minute.
		-time.Millisecond: "<invalid>", 2 * time.Hour: "2h0m", 500 * day: "500d", 2 * pkigen.Year: "2y", 20 * time.Second: "20s",
	} {
		if got := pki.Residual(d); got != want {
			t.Errorf("Residual(%s) = %s, want %s", d, got, want)
		}
	}
}

func clone(m map[string][]byte) map[string][]byte {
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = append([]byte(nil), v...)
	}
	return out
}
