package pki

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// FleetFacts is what Fleet judges, read from a Secret once: the dates of ca.crt and of the k0s
// leaf certificates, or why each could not be read. It holds no certificate or key bytes, so a
// service following thousands of Secrets keeps this and judges it at every scrape (Row).
type FleetFacts struct {
	Namespace  string
	Release    string
	LastRepair string
	// LastRestart and RestartedPod are the restart record (LastRestartAnnotation).
	LastRestart  time.Time
	RestartedPod string
	// certs are ca.crt, then (when the Secret has k0s leaf keys) the k0s leaf certificates in
	// K0sLeafFiles order.
	certs   []fleetCert
	k0sKeys int
}

// fleetCert is one certificate's dates, or its problem ("is missing", a parse error).
type fleetCert struct {
	path                string
	problem             string
	notBefore, notAfter time.Time
}

// ReadFleet parses the certificates Fleet judges.
func ReadFleet(s *Secret) FleetFacts {
	f := FleetFacts{Namespace: s.Namespace, Release: strings.TrimSuffix(s.Name, "-certs"), LastRepair: s.Annotations[LastRepairAnnotation],
		RestartedPod: s.Annotations[RestartedPodAnnotation]}
	f.LastRestart, _ = time.Parse(time.RFC3339, s.Annotations[LastRestartAnnotation])
	read := func(path string) {
		data, ok := s.Data[SecretKey(path)]
		if !ok {
			f.certs = append(f.certs, fleetCert{path: path, problem: path + " is missing"})
			return
		}
		c, err := ParseCertPEM(data)
		if err != nil {
			f.certs = append(f.certs, fleetCert{path: path, problem: path + ": " + err.Error()})
			return
		}
		f.certs = append(f.certs, fleetCert{path: path, notBefore: c.NotBefore, notAfter: c.NotAfter})
	}
	read("ca.crt")
	for _, p := range K0sLeafFiles {
		if _, ok := s.Data[SecretKey(p)]; ok {
			f.k0sKeys++
		}
	}
	if f.k0sKeys > 0 {
		for _, p := range K0sLeafFiles {
			if strings.HasSuffix(p, ".crt") {
				read(p)
			}
		}
	}
	return f
}

// Row judges the facts at now: the worst status of ca.crt and the k0s leaves, the earliest leaf.
func (f FleetFacts) Row(now time.Time, renewBefore time.Duration) FleetRow {
	row := FleetRow{Namespace: f.Namespace, Release: f.Release, Distro: "k8s/k3s", LastRepair: f.LastRepair,
		LastRestart: f.LastRestart, RestartedPod: f.RestartedPod}
	worst := func(st FleetStatus, detail string) {
		if row.Status == "" || slices.Index(fleetOrder, st) < slices.Index(fleetOrder, row.Status) {
			row.Status, row.Detail = st, detail
		}
	}
	judge := func(c fleetCert) *File {
		if c.problem != "" {
			worst(FleetUnreadable, c.problem)
			return nil
		}
		fl := &File{Path: c.path, Cert: &CertInfo{NotBefore: c.notBefore, NotAfter: c.notAfter}, Status: Classify(c.notBefore, c.notAfter, now, renewBefore)}
		switch fl.Status {
		case StatusExpired:
			worst(FleetExpired, describe(*fl, now))
		case StatusDue:
			worst(FleetDue, describe(*fl, now))
		case StatusNotYetValid:
			worst(FleetUnreadable, describe(*fl, now))
		}
		return fl
	}
	if ca := judge(f.certs[0]); ca != nil {
		row.CAExpiry = ca.Cert.NotAfter.UTC()
	}
	switch {
	case f.k0sKeys == 0:
		worst(FleetNoK0s, "no k0s leaf keys in the Secret")
		return row
	case f.k0sKeys < len(K0sLeafFiles):
		worst(FleetUnreadable, fmt.Sprintf("only %d of the %d k0s leaf keys: vcluster loops on a half-updated Secret", f.k0sKeys, len(K0sLeafFiles)))
	}
	row.Distro = "k0s"
	for _, c := range f.certs[1:] {
		if fl := judge(c); fl != nil && (row.LeafExpiry.IsZero() || fl.Cert.NotAfter.Before(row.LeafExpiry)) {
			row.LeafFile, row.LeafExpiry = c.path, fl.Cert.NotAfter.UTC()
		}
	}
	worst(FleetOK, "")
	return row
}
