package fleet

import (
	"syscall"
	"testing"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
)

// BenchmarkParse reduces one vcluster certificate Secret (RSA-2048 vcluster v0.25 + k0s PKI, 43
// keys) as the informer does on each LIST page: what fleet serve's first sync spends beside the
// wire, per vcluster. cpu-sec/op is the process's CPU (GC included), steadier than the wall
// time on a shared machine.
func BenchmarkParse(b *testing.B) {
	p, err := pkigen.Generate(pkigen.Options{Key: pkigentest.RSA})
	if err != nil {
		b.Fatal(err)
	}
	s := &pki.Secret{Namespace: "ns", Name: "vc-certs", Data: p.SecretData()}
	start := cpuTime(b)
	for b.Loop() {
		if Parse(s) == nil {
			b.Fatal("not followed")
		}
	}
	b.ReportMetric((cpuTime(b)-start).Seconds()/float64(b.N), "cpu-sec/op")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
