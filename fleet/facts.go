package fleet

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certguard/certguard/pki"
	"github.com/certguard/certguard/restart"
)

// Facts is what Judge judges, read from a Secret once: the dates of ca.crt and of the k0s
// leaf certificates, or why each could not be read. It holds no certificate or key bytes, so a
// service following thousands of Secrets keeps this and judges it at every scrape (Row).
type Facts struct {
	Namespace  string
	Release    string
	LastRepair pki.RepairRecord
	// LastRestart and RestartedPod are the restart record (restart.Record).
	LastRestart  time.Time
	RestartedPod string
	// certs are ca.crt, then (when the Secret has k0s leaf keys) the k0s leaf certificates in
	// pki.K0sLeafFiles order.
	certs   []fleetCert
	k0sKeys int
}

// fleetCert is one certificate's dates, or its problem ("is missing", a parse error).
type fleetCert struct {
	path                string
	problem             string
	notBefore, notAfter time.Time
}

// ReadFacts parses the certificates Judge judges.
func ReadFacts(s *pki.Secret) Facts { return readFacts(s, pki.ParseCertPEM) }

// readFacts is ReadFacts parsing through parseCert (a pki.CertParser's, in fleet serve's
// transform, which reads the same certificates again for their series).
func readFacts(s *pki.Secret, parseCert func([]byte) (*x509.Certificate, error)) Facts {
	rec := restart.ReadRecord(s.Annotations)
	f := Facts{Namespace: s.Namespace, Release: strings.TrimSuffix(s.Name, "-certs"), LastRestart: rec.LastRestart, RestartedPod: rec.RestartedPod}
	f.LastRepair, _ = pki.ParseRepairRecord(s.Annotations[pki.LastRepairAnnotation])
	read := func(path string) {
		data, ok := s.Data[pki.SecretKey(path)]
		if !ok {
			f.certs = append(f.certs, fleetCert{path: path, problem: path + " is missing"})
			return
		}
		c, err := parseCert(data)
		if err != nil {
			f.certs = append(f.certs, fleetCert{path: path, problem: path + ": " + err.Error()})
			return
		}
		f.certs = append(f.certs, fleetCert{path: path, notBefore: c.NotBefore, notAfter: c.NotAfter})
	}
	read("ca.crt")
	for _, p := range pki.K0sLeafFiles {
		if _, ok := s.Data[pki.SecretKey(p)]; ok {
			f.k0sKeys++
		}
	}
	if f.k0sKeys > 0 {
		for _, p := range pki.K0sLeafFiles {
			if pki.FormatOf(p) == pki.FormatCert {
				read(p)
			}
		}
	}
	return f
}

// Row judges the facts at now: the worst status of ca.crt and the k0s leaves, the earliest leaf.
func (f Facts) Row(now time.Time, renewBefore time.Duration) Row {
	row := Row{Namespace: f.Namespace, Release: f.Release, Distro: "k8s/k3s", LastRepair: f.LastRepair,
		LastRestart: f.LastRestart, RestartedPod: f.RestartedPod}
	// Every scrape judges every vcluster: nothing here allocates unless a certificate needs a
	// detail (measured at 10,000 vclusters: a fifth of a scrape's CPU went to the pki.File each
	// certificate was judged through).
	if c := f.certs[0]; row.judge(c, now, renewBefore) {
		row.CAExpiry = c.notAfter.UTC()
	}
	switch {
	case f.k0sKeys == 0:
		row.worst(StatusNoK0s, "no k0s leaf keys in the Secret")
		return row
	case f.k0sKeys < len(pki.K0sLeafFiles):
		row.worst(StatusUnreadable, fmt.Sprintf("only %d of the %d k0s leaf keys: vcluster loops on a half-updated Secret", f.k0sKeys, len(pki.K0sLeafFiles)))
	}
	row.Distro = "k0s"
	for _, c := range f.certs[1:] {
		if row.judge(c, now, renewBefore) && (row.LeafExpiry.IsZero() || c.notAfter.Before(row.LeafExpiry)) {
			row.LeafFile, row.LeafExpiry = c.path, c.notAfter.UTC()
		}
	}
	row.worst(StatusOK, "")
	return row
}

// worst keeps the most urgent status seen.
func (row *Row) worst(st Status, detail string) {
	if row.Status == "" || slices.Index(statusOrder, st) < slices.Index(statusOrder, row.Status) {
		row.Status, row.Detail = st, detail
	}
}

// judge classifies one certificate into row; false when it could not be read.
func (row *Row) judge(c fleetCert, now time.Time, renewBefore time.Duration) bool {
	if c.problem != "" {
		row.worst(StatusUnreadable, c.problem)
		return false
	}
	st := pki.Classify(c.notBefore, c.notAfter, now, renewBefore)
	var to Status
	switch st {
	case pki.StatusExpired:
		to = StatusExpired
	case pki.StatusDue:
		to = StatusDue
	case pki.StatusNotYetValid:
		to = StatusUnreadable
	default:
		return true
	}
	if row.Status == "" || slices.Index(statusOrder, to) < slices.Index(statusOrder, row.Status) {
		fl := pki.File{Path: c.path, Cert: &pki.CertInfo{NotBefore: c.notBefore, NotAfter: c.notAfter}, Status: st}
		row.worst(to, fl.Describe(now))
	}
	return true
}
