package fleet

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/certguard/certguard/exporter"
	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/pki/pkigen"
)

// TestWriteSameAsBefore: Metrics.Write, made cheaper for issue 20, writes the very bytes the
// writer before it wrote (refWrite, kept below verbatim but for its name and receiver, and the
// serial number's place, s.serial(c) since the serials are stored end to end), on a
// fleet of every kind of Secret (healthy, due, expired, without k0s keys, a corrupt
// certificate, a repair recorded, kubeconfig Secrets owned or not, a deleted Secret whose
// vcluster is still there) at instants around the expiries.
func TestWriteSameAsBefore(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 890, time.UTC)
	gen := func(leavesExpire time.Time, cn string) *pkigen.PKI {
		p, err := pkigen.Generate(pkigen.Options{Now: now, K0sIssued: leavesExpire.Add(-pkigen.Year + pkigen.Backdate), K0sLifetime: pkigen.Year})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	leavesAt := now.Add(30 * 24 * time.Hour)
	healthy, due, expired := gen(now.Add(300*24*time.Hour), ""), gen(leavesAt, ""), gen(now.Add(-24*time.Hour), "")
	noK0s := healthy.SecretData()
	for _, k := range pki.K0sLeafFiles {
		delete(noK0s, pki.SecretKey(k))
	}
	corrupt := due.SecretData()
	corrupt["apiserver.crt"] = []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
	half := healthy.SecretData()
	delete(half, "server.crt")
	kc := func(p *pkigen.PKI) map[string][]byte {
		return map[string][]byte{KubeconfigKey: pkigen.Kubeconfig("https://a.ns:443", p.Files["ca.crt"], p.Files["admin.crt"], p.Files["admin.key"])}
	}
	secrets := []*pki.Secret{
		{Namespace: "ns-a", Name: "healthy-certs", Data: healthy.SecretData()},
		{Namespace: "ns-a", Name: "due-certs", Data: due.SecretData(), Annotations: map[string]string{pki.LastRepairAnnotation: "2026-01-02T03:04:05Z leaves"}},
		{Namespace: "ns-a", Name: "expired-certs", Data: expired.SecretData()},
		{Namespace: "ns-b", Name: "nok0s-certs", Data: noK0s},
		{Namespace: "ns-b", Name: "corrupt-certs", Data: corrupt},
		{Namespace: "ns-b", Name: "half-certs", Data: half},
		{Namespace: "ns-c", Name: "vc-healthy", Data: kc(healthy)},
		{Namespace: "ns-c", Name: "vc-stranger", Data: kc(gen(now.Add(300*24*time.Hour), ""))},
		{Namespace: "ns-d", Name: "gone-certs", Data: due.SecretData()},
	}
	filler := gen(now.Add(200*24*time.Hour), "").SecretData()
	for i := range 20 {
		secrets = append(secrets, &pki.Secret{Namespace: fmt.Sprintf("ns-%d", i%3), Name: fmt.Sprintf("vc%02d-certs", i), Data: filler})
	}
	st, wl := NewState(), NewWorkloads()
	for _, s := range secrets {
		st.Set(s.Namespace+"/"+s.Name, Parse(s))
	}
	wl.Set("ns-d/gone", &kube.StatefulSet{Namespace: "ns-d", Name: "gone"})
	st.Set("ns-d/gone-certs", nil)
	m := &Metrics{State: st, RenewBefore: 120 * 24 * time.Hour, Workloads: wl, Build: exporter.Build{Version: "v1", Commit: "c", Date: "d"}}
	for _, at := range []time.Time{now, leavesAt.Add(-time.Second), leavesAt, leavesAt.Add(time.Nanosecond), leavesAt.Add(time.Second), now.Add(400 * 24 * time.Hour)} {
		var got, want bytes.Buffer
		w := bufio.NewWriter(&want)
		refWrite(m, w, at)
		w.Flush()
		w = bufio.NewWriter(&got)
		m.Write(w, at)
		w.Flush()
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			g, wl := bytes.Split(got.Bytes(), []byte("\n")), bytes.Split(want.Bytes(), []byte("\n"))
			for i := range min(len(g), len(wl)) {
				if !bytes.Equal(g[i], wl[i]) {
					t.Fatalf("at %s, line %d:\n got %s\nwant %s", at, i+1, g[i], wl[i])
				}
			}
			t.Fatalf("at %s: %d lines, want %d", at, len(g), len(wl))
		}
		for _, kind := range []string{`status="EXPIRED",vcluster="expired"} 1`, `status="DUE",vcluster="due"} 1`, `status="NO-K0S-CERTS",vcluster="nok0s"} 1`,
			`status="UNREADABLE",vcluster="half"} 1`, `vcluster="healthy"} 1.`, `vcluster=""} 1.`, `source_name="ns-d/gone-certs"} 0`} {
			if at == now && !bytes.Contains(got.Bytes(), []byte(kind)) {
				t.Errorf("no line with %s: the fleet lacks a kind of Secret", kind)
			}
		}
	}
}

func refWrite(m *Metrics, w *bufio.Writer, now time.Time) {
	secrets := m.State.snapshot()
	var certSecrets, kubeconfigs []*Secret
	for _, s := range secrets {
		if s.kubeconfig != nil {
			kubeconfigs = append(kubeconfigs, s)
		} else {
			certSecrets = append(certSecrets, s)
		}
	}
	rows := make([]Row, len(certSecrets))
	for i, s := range certSecrets {
		rows[i] = s.facts.Row(now, m.RenewBefore)
	}
	var buf []byte
	value := func(v float64) {
		buf = strconv.AppendFloat(buf[:0], v, 'g', -1, 64)
		w.Write(buf)
		w.WriteByte('\n')
	}
	vcluster := func(name string, i int) {
		w.WriteString(name)
		w.WriteString(`{secret_namespace="`)
		w.WriteString(escapeLabel(rows[i].Namespace))
		w.WriteString(`",vcluster="`)
		w.WriteString(escapeLabel(rows[i].Release))
		w.WriteString(`"} `)
	}
	header(w, famCount)
	w.WriteString(famCount.Name + " ")
	value(float64(len(certSecrets)))
	m.writeBuildInfo(w)
	gone := m.downSources()
	if len(secrets) == 0 && len(gone) == 0 {
		return
	}
	kubeconfigRows := func() {
		if len(kubeconfigs) == 0 {
			return
		}
		own := indexOwners(certSecrets)
		header(w, famKC)
		for _, s := range kubeconfigs {
			w.WriteString(famKC.Name + `{secret_name="`)
			w.WriteString(escapeLabel(s.name))
			w.WriteString(`",secret_namespace="`)
			w.WriteString(escapeLabel(s.namespace))
			w.WriteString(`",vcluster="`)
			w.WriteString(escapeLabel(own.vcluster(s)))
			w.WriteString(`"} `)
			value(float64(s.kubeconfig.expiry.Unix()))
		}
	}
	for _, f := range []exporter.Family{famCA, famKC, famRepair, famLeaf} {
		if f == famKC {
			kubeconfigRows()
			continue
		}
		first := true
		for i := range rows {
			var t time.Time
			switch f {
			case famCA:
				t = rows[i].CAExpiry
			case famLeaf:
				t = rows[i].LeafExpiry
			}
			if f != famRepair && t.IsZero() {
				continue
			}
			if first {
				header(w, f)
				first = false
			}
			vcluster(f.Name, i)
			if f == famRepair {
				value(unix(rows[i].LastRepair.At))
				continue
			}
			value(float64(t.Unix()))
		}
	}
	if len(rows) > 0 {
		header(w, famStatus)
	}
	for i := range rows {
		for _, st := range statuses {
			w.WriteString(famStatus.Name + `{secret_namespace="`)
			w.WriteString(escapeLabel(rows[i].Namespace))
			w.WriteString(`",status="` + string(st) + `",vcluster="`)
			w.WriteString(escapeLabel(rows[i].Release))
			w.WriteString(`"} `)
			if st == rows[i].Status {
				value(1)
			} else {
				value(0)
			}
		}
	}
	for _, f := range []exporter.Family{exporter.CertExpired, exporter.CertExpiresIn, exporter.CertNotAfter, exporter.CertNotBefore} {
		first := true
		for _, s := range secrets {
			for i := range s.certs {
				c := &s.certs[i]
				if first {
					header(w, f)
					first = false
				}
				w.WriteString(f.Name)
				w.WriteByte('{')
				lp := c.labels.Value()
				w.WriteString(lp.pre)
				w.WriteString(lp.key)
				w.WriteString(s.secretLabels)
				w.WriteString(`serial_number="`)
				w.WriteString(s.serial(c))
				w.WriteString(`",`)
				w.WriteString(lp.post)
				w.WriteString("} ")
				switch f {
				case exporter.CertExpired:
					if now.After(time.Unix(c.notAfter, 0)) {
						value(1)
					} else {
						value(0)
					}
				case exporter.CertExpiresIn:
					value(time.Unix(c.notAfter, 0).Sub(now).Seconds())
				case exporter.CertNotAfter:
					value(float64(c.notAfter))
				case exporter.CertNotBefore:
					value(float64(c.notBefore))
				}
			}
		}
		m.Served.writeServed(w, f, &first, now)
	}
	header(w, exporter.SourceUp)
	// Each line is written in constant pieces: a concatenation here would allocate once per
	// Secret and scrape.
	up := func(key, line string) {
		w.WriteString(exporter.SourceUp.Name + `{source_kind="` + string(exporter.KindKubeSecret) + `",source_name="`)
		w.WriteString(escapeLabel(exporter.LabelValue(key)))
		w.WriteString(line)
	}
	for _, s := range secrets {
		up(s.key, "\"} 1\n")
	}
	for _, g := range gone {
		up(g.key, "\"} 0\n")
	}
	m.Served.writeServed(w, exporter.SourceUp, nil, now)
	m.Served.writeServedGauges(w)
}

// appendSeconds writes what strconv.AppendFloat writes for whole seconds: around each power of
// ten, the signs, the limits of exact integers, and at random.
func TestAppendSeconds(t *testing.T) {
	vals := []int64{0, 1, -1, 9, 10, 999999, 1000000, 1000001, 1234567, 1798848000, 1798848001, 2085368767, -2085368767,
		1 << 53, 1<<53 - 1, -(1 << 53), -(1<<53 - 1), 1 << 62, -1 << 63, 1<<63 - 1}
	for p := int64(1); p < 1e18; p *= 10 {
		vals = append(vals, p-1, p, p+1, -p, 7*p, 12*p+3)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		vals = append(vals, rng.Int64N(1<<54)-1<<53, rng.Int64N(4e9))
	}
	for _, v := range vals {
		if got, want := string(appendSeconds(nil, v)), strconv.FormatFloat(float64(v), 'g', -1, 64); got != want {
			t.Fatalf("%d: %s, want %s", v, got, want)
		}
	}
}
