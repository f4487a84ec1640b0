package probe_test

import (
	"crypto/x509"
	"testing"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/probe"
	"github.com/certguard/certguard/probe/probetest"
)

func TestMismatch(t *testing.T) {
	v := probetest.NewVcluster(t)
	p, other, syncer := v.PKI, v.Other, v.SyncerCrt
	parse := func(b []byte) *x509.Certificate {
		c, err := pki.ParseCertPEM(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cases := []struct {
		name            string
		e               probe.Endpoint
		served          []byte
		stored          map[string][]byte
		mismatch, known bool
	}{
		{"apiserver serves server.crt", probe.EndpointAPIServer, p.Files["server.crt"], p.Files, false, true},
		{"apiserver serves another leaf", probe.EndpointAPIServer, other.Files["server.crt"], p.Files, true, true},
		{"apiserver, nothing stored", probe.EndpointAPIServer, p.Files["server.crt"], nil, false, false},
		{"syncer signed by ca.crt", probe.EndpointSyncer, syncer, p.Files, false, true},
		{"syncer signed by another CA", probe.EndpointSyncer, other.Files["server.crt"], p.Files, true, true},
		{"syncer, no ca.crt stored", probe.EndpointSyncer, syncer, map[string][]byte{"ca.crt": []byte("garbage")}, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, k := probe.Mismatch(c.e, parse(c.served), c.stored)
			if m != c.mismatch || k != c.known {
				t.Fatalf("Mismatch = %v, known %v; want %v, %v", m, k, c.mismatch, c.known)
			}
		})
	}
	if m, k := probe.Mismatch(probe.EndpointAPIServer, nil, p.Files); m || k {
		t.Fatal("an endpoint that served nothing is judged")
	}
}
