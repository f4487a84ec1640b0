package watch

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/certguard/certguard/exporter"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/prometheus/client_golang/prometheus"
)

// FuzzCollectorFileNames: whatever a file in the pki dir (or a key of the Secret) is named and
// holds, a scrape renders: no panic, no error from the registry, every label value valid UTF-8,
// and a certificate under any name still has its series. File names are any bytes but '/' and
// NUL on Linux, and Prometheus refuses label values that are not UTF-8.
func FuzzCollectorFileNames(f *testing.F) {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	p, err := pkigen.Generate(pkigen.Options{Now: now})
	if err != nil {
		f.Fatal(err)
	}
	crt := p.Files["apiserver.crt"]
	for _, name := range []string{"extra.crt", "\xff.crt", "a\x80b.crt", "\xc3\x28.crt", "etcd/\xfe\xff.crt", "a\\xff.crt",
		"server.crt", "", ".", "..", "../up.crt", "admin.conf", "\xff.conf", "x\x00y.crt", "caf\u00e9.crt"} {
		f.Add(name, crt)
	}
	f.Add("\xff.conf", p.Files["admin.conf"])
	f.Add("\xff.crt", []byte("-----BEGIN CERTIFICATE-----\n\xff\n-----END CERTIFICATE-----\n"))
	f.Add("\xff.key", p.Files["ca.key"])
	dir := "/data/k0s/pki"
	f.Fuzz(func(t *testing.T, name string, content []byte) {
		files := map[string][]byte{"ca.crt": p.Files["ca.crt"], "server.crt": p.Files["server.crt"], "admin.conf": p.Files["admin.conf"]}
		files[name] = content
		disk := pki.Store{Source: pki.SourceDisk, Present: true, Files: files}
		secret := pki.FromSecret(&pki.Secret{Namespace: "ns", Name: "vc-certs", Data: map[string][]byte{name: content, "ca.crt": p.Files["ca.crt"]}})
		diskOnly := pki.Inspect(disk, pki.Store{}, now, 120*24*time.Hour)
		secretOnly := pki.Inspect(pki.Store{}, secret, now, 120*24*time.Hour)
		m := NewMetrics(func() time.Time { return now })
		m.Errors.AddSource(exporter.KindFile, dir+"/"+name)
		m.Errors.Count(exporter.KindKubeSecret, "ns/"+name, exporter.ReasonSecretUnreadable)
		m.set(snapshot{pkiDir: dir, disk: diskOnly, kubeconfigs: diskKubeconfigs(disk, diskOnly), diskUp: true,
			secret: secretOnly, secretUp: true, secretNS: "ns", secretName: "vc-certs"})
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(m)
		fams, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather with a file named %q: %v", name, err)
		}
		paths := map[string]bool{}
		for _, fam := range fams {
			for _, mt := range fam.Metric {
				for _, l := range mt.Label {
					if !utf8.ValidString(l.GetValue()) {
						t.Fatalf("%s{%s=%q}: not UTF-8", fam.GetName(), l.GetName(), l.GetValue())
					}
					if fam.GetName() == "x509_cert_not_after" && l.GetName() == "filepath" {
						paths[l.GetValue()] = true
					}
				}
			}
		}
		// A readable certificate under an unknown name: its series is there, under the name
		// made valid UTF-8.
		if _, err := pki.ParseCertPEM(content); err == nil && strings.HasSuffix(name, ".crt") && files[name] != nil {
			for _, fl := range diskOnly.Files {
				if fl.Path == name && fl.Cert != nil && !paths[exporter.LabelValue(filepath.Join(dir, name))] {
					t.Fatalf("no series for %q (have %v)", name, paths)
				}
			}
		}
	})
}
