package pki_test

import (
	"crypto/rsa"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
)

// Benchmarks of the in-process half of a healthy `certguard repair`: read the 43-file pki dir,
// parse, classify, plan. Run them with bench/benchstat.sh (go test -bench -benchmem -count=6,
// then benchstat). The PKI is RSA-2048 like vcluster's and k0s's unless a name says ecdsa: RSA
// private-key parsing is most of the cost.
//
// Besides sec/op (wall time), each benchmark reports cpu-sec/op: the process's user+system CPU
// time per operation (getrusage, every thread, GC included). On a machine shared with other
// builds, wall time stretches with the load while CPU time stays put, so compare cpu-sec/op.

var benchNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const benchRenewBefore = 120 * 24 * time.Hour

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs f in a b.Loop and reports cpu-sec/op next to the wall time.
func loop(b *testing.B, f func()) {
	b.Helper()
	start := cpuTime(b)
	for b.Loop() {
		f()
	}
	b.ReportMetric((cpuTime(b)-start).Seconds()/float64(b.N), "cpu-sec/op")
}

var benchPKIs sync.Map // "rsa"/"ecdsa" → *pkigen.PKI

// benchPKI generates a healthy vcluster v0.25 + k0s PKI once per key type (RSA takes ~1.5 s).
func benchPKI(b testing.TB, rsa bool) *pkigen.PKI {
	b.Helper()
	name := map[bool]string{true: "rsa", false: "ecdsa"}[rsa]
	if p, ok := benchPKIs.Load(name); ok {
		return p.(*pkigen.PKI)
	}
	p, err := pkigen.Generate(pkigen.Options{Now: benchNow, Key: pkigentest.KeyFunc(rsa)})
	if err != nil {
		b.Fatal(err)
	}
	benchPKIs.Store(name, p)
	return p
}

func benchKeyTypes(b *testing.B, f func(b *testing.B, p *pkigen.PKI)) {
	for _, kt := range []struct {
		name string
		rsa  bool
	}{{"rsa", true}, {"ecdsa", false}} {
		b.Run(kt.name, func(b *testing.B) { f(b, benchPKI(b, kt.rsa)) })
	}
}

func BenchmarkParseCertPEM(b *testing.B) {
	benchKeyTypes(b, func(b *testing.B, p *pkigen.PKI) {
		data := p.Files["server.crt"]
		b.SetBytes(int64(len(data)))
		loop(b, func() {
			if _, err := pki.ParseCertPEM(data); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkParseKeyPEM parses a private key for its public half (every .key file, and once more
// for each .crt whose .key lies beside it).
func BenchmarkParseKeyPEM(b *testing.B) {
	benchKeyTypes(b, func(b *testing.B, p *pkigen.PKI) {
		data := p.Files["server.key"]
		b.SetBytes(int64(len(data)))
		loop(b, func() {
			if _, err := pki.ParseKeyPEM(data); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkParsePKCS1PublicOnly is what reading an RSA key's public half needs at least: the
// DER's modulus and exponent, without crypto/rsa's validation and precomputation of the private
// key. It bounds what a leaner ParseKeyPEM could save.
func BenchmarkParsePKCS1PublicOnly(b *testing.B) {
	blk, _ := pem.Decode(benchPKI(b, true).Files["server.key"])
	if blk == nil || blk.Type != "RSA PRIVATE KEY" {
		b.Fatal("server.key is not PKCS#1")
	}
	b.SetBytes(int64(len(blk.Bytes)))
	loop(b, func() {
		if _, err := pkcs1Public(blk.Bytes); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkParseKubeconfig(b *testing.B) {
	benchKeyTypes(b, func(b *testing.B, p *pkigen.PKI) {
		data := p.Files["admin.conf"]
		b.SetBytes(int64(len(data)))
		loop(b, func() {
			if _, err := pki.ParseKubeconfig(data); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkReadDir reads the 43 files of a vcluster v0.25 pki dir (page cache warm).
func BenchmarkReadDir(b *testing.B) {
	p := benchPKI(b, true)
	dir := filepath.Join(b.TempDir(), "pki")
	if err := pkigen.WriteDir(dir, p.Files); err != nil {
		b.Fatal(err)
	}
	loop(b, func() {
		st, err := pki.ReadDir(dir)
		if err != nil || len(st.Files) != len(p.Files) {
			b.Fatalf("read %d of %d files: %v", len(st.Files), len(p.Files), err)
		}
	})
}

// BenchmarkInspect classifies a whole healthy PKI: disk alone (check --no-secret) and disk with
// the Secret overlaid (repair, check).
func BenchmarkInspect(b *testing.B) {
	benchKeyTypes(b, func(b *testing.B, p *pkigen.PKI) {
		disk := pki.Store{Source: pki.SourceDisk, Present: true, Files: p.Files, Errors: map[string]error{}}
		sec := pki.FromSecret(&pki.Secret{Namespace: "vc", Name: "vc-certs", Data: p.SecretData()})
		for _, c := range []struct {
			name   string
			secret pki.Store
		}{{"disk", pki.FromSecret(nil)}, {"disk+secret", sec}} {
			b.Run(c.name, func(b *testing.B) {
				loop(b, func() {
					r := pki.Inspect(disk, c.secret, benchNow, benchRenewBefore)
					if len(r.Files) != len(p.Files) {
						b.Fatalf("%d rows for %d files", len(r.Files), len(p.Files))
					}
				})
			})
		}
	})
}

// BenchmarkBuildPlan plans from a report: nothing due (every healthy start) and the 14 k0s leaves
// expired (a leaf repair).
func BenchmarkBuildPlan(b *testing.B) {
	healthy := benchPKI(b, false)
	expired, err := pkigen.Generate(pkigen.Options{Now: benchNow, K0sIssued: benchNow.Add(-400 * 24 * time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	pol := pki.Policy{Strategy: pki.StrategyAuto, Secret: pki.SecretRef{Namespace: "vc", Name: "vc-certs"}, MaxClockSkew: 5 * time.Minute}
	for _, c := range []struct {
		name     string
		p        *pkigen.PKI
		decision pki.Decision
	}{{"healthy", healthy, pki.DecideNothing}, {"expired-leaves", expired, pki.DecideLeaves}} {
		disk := pki.Store{Source: pki.SourceDisk, Present: true, Files: c.p.Files, Errors: map[string]error{}}
		sec := pki.FromSecret(&pki.Secret{Namespace: "vc", Name: "vc-certs", Data: c.p.SecretData()})
		r := pki.Inspect(disk, sec, benchNow, benchRenewBefore)
		b.Run(c.name, func(b *testing.B) {
			loop(b, func() {
				if plan := pki.BuildPlan(r, pol); plan.Decision != c.decision {
					b.Fatalf("decision %s, want %s", plan.Decision, c.decision)
				}
			})
		})
	}
}

// BenchmarkHealthyStart is everything a healthy `certguard repair` does in process besides
// starting and the GET: read the dir, map the Secret, classify, plan.
func BenchmarkHealthyStart(b *testing.B) {
	p := benchPKI(b, true)
	dir := filepath.Join(b.TempDir(), "pki")
	if err := pkigen.WriteDir(dir, p.Files); err != nil {
		b.Fatal(err)
	}
	secret := &pki.Secret{Namespace: "vc", Name: "vc-certs", Data: p.SecretData()}
	pol := pki.Policy{Strategy: pki.StrategyAuto, Secret: pki.SecretRef{Namespace: "vc", Name: "vc-certs"}, MaxClockSkew: 5 * time.Minute}
	loop(b, func() {
		disk, err := pki.ReadDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		r := pki.Inspect(disk, pki.FromSecret(secret), benchNow, benchRenewBefore)
		if plan := pki.BuildPlan(r, pol); plan.Decision != pki.DecideNothing {
			b.Fatalf("decision %s", plan.Decision)
		}
	})
}

// pkcs1Public reads n and e from a PKCS#1 RSAPrivateKey (version, n, e, d, p, q, …) and stops:
// encoding/asn1 allows a struct to end before the SEQUENCE does.
func pkcs1Public(der []byte) (*rsa.PublicKey, error) {
	var k struct {
		Version int
		N       *big.Int
		E       int
	}
	if _, err := asn1.Unmarshal(der, &k); err != nil {
		return nil, err
	}
	return &rsa.PublicKey{N: k.N, E: k.E}, nil
}
