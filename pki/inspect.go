package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"slices"
	"strings"
	"time"
)

// Status is the state of one file. The values are a stable contract (JSON output, metrics).
type Status string

const (
	StatusOK            Status = "ok"
	StatusDue           Status = "due"
	StatusExpired       Status = "expired"
	StatusNotYetValid   Status = "not-yet-valid"
	StatusCorrupt       Status = "corrupt"
	StatusKeyMismatch   Status = "key-mismatch"
	StatusUnknownIssuer Status = "unknown-issuer"
	StatusMissing       Status = "missing"
)

// Classify places a validity window relative to now. A certificate is still valid at exactly
// NotAfter (crypto/x509 rejects only a time after it), and due when no more than renewBefore is
// left.
func Classify(notBefore, notAfter, now time.Time, renewBefore time.Duration) Status {
	switch {
	case now.Before(notBefore):
		return StatusNotYetValid
	case now.After(notAfter):
		return StatusExpired
	case notAfter.Sub(now) <= renewBefore:
		return StatusDue
	}
	return StatusOK
}

// Drift compares one file between disk and Secret.
type Drift string

const (
	DriftNone       Drift = ""            // no Secret to compare with
	DriftSame       Drift = "same"        // identical bytes
	DriftSecretOnly Drift = "secret-only" // vcluster will write it to disk at start
	DriftDiskOnly   Drift = "disk-only"   // the Secret does not have it
	DriftDiffers    Drift = "differs"     // the Secret's bytes replace the disk's at start
)

// CertInfo describes a certificate. It never carries key material.
type CertInfo struct {
	Subject     string    `json:"subject"`
	SubjectCN   string    `json:"subjectCN"`
	Issuer      string    `json:"issuer"`
	IssuerCN    string    `json:"issuerCN"`
	Serial      string    `json:"serialNumber"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	IsCA        bool      `json:"isCA"`
	Usages      []string  `json:"usages,omitempty"`
	Fingerprint string    `json:"sha256"`
	// User is the kubeconfig user the certificate is embedded for.
	User string `json:"user,omitempty"`
	// SubjectName and IssuerName are the parsed names, for metric labels.
	SubjectName pkix.Name `json:"-"`
	IssuerName  pkix.Name `json:"-"`
}

// File is one row of a Report: a file as the next pod start will see it.
type File struct {
	Path string `json:"path"`
	Role Role   `json:"role"`
	// Source is where the bytes the next start uses come from: the Secret wins because vcluster
	// writes it over the disk.
	Source   Source    `json:"source"`
	OnDisk   bool      `json:"onDisk"`
	InSecret bool      `json:"inSecret"`
	Drift    Drift     `json:"drift,omitempty"`
	Newer    Source    `json:"newer,omitempty"` // for differing certificates: the later NotBefore
	Cert     *CertInfo `json:"certificate,omitempty"`
	Status   Status    `json:"status"`
	// Reason is the code of a corrupt file (why its bytes could not be used); Detail says in
	// words what is wrong with any file that is not ok.
	Reason Reason `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Kind is what the entry the next start uses is, when it is not a regular file.
	Kind Kind `json:"kind,omitempty"`
}

// Report is what Inspect found: every file, classified at one reference time.
type Report struct {
	Now           time.Time     `json:"now"`
	RenewBefore   time.Duration `json:"renewBefore"`
	DiskPresent   bool          `json:"diskPresent"`
	SecretPresent bool          `json:"secretPresent"`
	// PKIDir is the directory the disk was read from.
	PKIDir string `json:"pkiDir,omitempty"`
	Files  []File `json:"files"`
	// K0s is what is known of the k0s that starts on this PKI (SetK0s); zero: unknown.
	K0s K0s `json:"k0s,omitzero"`

	// The stores and the bytes the next start uses, for BuildPlan: its steps carry them.
	disk, secret Store
	eff          map[string][]byte
}

// File returns the row for a path.
func (r *Report) File(p string) (File, bool) {
	i := slices.IndexFunc(r.Files, func(f File) bool { return f.Path == p })
	if i < 0 {
		return File{}, false
	}
	return r.Files[i], true
}

// DiskEmpty reports a first start: no pki dir, or one without a single file.
func (r *Report) DiskEmpty() bool {
	if !r.DiskPresent {
		return true
	}
	return !slices.ContainsFunc(r.Files, func(f File) bool { return f.OnDisk })
}

// Inspect overlays the Secret on the disk the way vcluster's downloadCertsFromSecret does at
// pod start and classifies every file of the result at now.
func Inspect(disk, secret Store, now time.Time, renewBefore time.Duration) *Report {
	r := &Report{Now: now, RenewBefore: renewBefore, DiskPresent: disk.Present, SecretPresent: secret.Present, PKIDir: disk.Dir,
		disk: disk, secret: secret}
	eff := map[string][]byte{} // the bytes the next start uses
	bad := map[string]error{}
	for _, p := range paths(disk, secret) {
		e, _ := roleOf(p)
		f := File{Path: p, Role: e.role, Source: SourceDisk, OnDisk: disk.has(p), InSecret: secret.has(p)}
		if secret.Present && secret.has(p) {
			f.Source = SourceSecret
		}
		src := disk
		if f.Source == SourceSecret {
			src = secret
		}
		if err, ok := src.Errors[p]; ok {
			bad[p] = err
		} else {
			eff[p] = src.Files[p]
		}
		if secret.Present {
			f.Drift = drift(disk, secret, p)
		}
		r.Files = append(r.Files, f)
	}
	for i := range r.Files {
		classifyFile(&r.Files[i], eff, bad, now, renewBefore)
		if r.Files[i].Drift == DriftDiffers {
			r.Files[i].Newer = newer(disk.Files[r.Files[i].Path], secret.Files[r.Files[i].Path])
		}
	}
	r.Files = append(r.Files, missingFiles(eff, bad)...)
	r.eff = eff
	markK0sPartial(r)
	slices.SortFunc(r.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return r
}

func drift(disk, secret Store, p string) Drift {
	d, s := disk.has(p), secret.has(p)
	switch {
	case d && !s:
		return DriftDiskOnly
	case s && !d:
		return DriftSecretOnly
	case bytes.Equal(disk.Files[p], secret.Files[p]) && disk.Errors[p] == nil && secret.Errors[p] == nil:
		return DriftSame
	}
	return DriftDiffers
}

func newer(disk, secret []byte) Source {
	d, err1 := ParseCertPEM(disk)
	s, err2 := ParseCertPEM(secret)
	switch {
	case err1 != nil || err2 != nil:
		return ""
	case d.NotBefore.After(s.NotBefore):
		return SourceDisk
	case s.NotBefore.After(d.NotBefore):
		return SourceSecret
	}
	return ""
}

// classifyFile fills Cert, Status, Reason and Detail of one row from the effective bytes.
func classifyFile(f *File, eff map[string][]byte, bad map[string]error, now time.Time, renewBefore time.Duration) {
	if err, ok := bad[f.Path]; ok {
		f.Status, f.Reason, f.Detail = StatusCorrupt, reasonOf(err), err.Error()
		var ee *EntryError
		if errors.As(err, &ee) && ee.Kind != KindRegular {
			f.Kind = ee.Kind
		}
		return
	}
	corrupt := func(err error) { f.Status, f.Reason, f.Detail = StatusCorrupt, reasonOf(err), err.Error() }
	mismatch := func(detail string) { f.Status, f.Detail = StatusKeyMismatch, detail }
	data := eff[f.Path]
	e, _ := roleOf(f.Path)
	f.Status = StatusOK
	switch f.Format() {
	case FormatCert:
		c, err := ParseCertPEM(data)
		if err != nil {
			corrupt(err)
			return
		}
		f.Cert = certInfo(c, "")
		if keyData, ok := eff[strings.TrimSuffix(f.Path, ".crt")+".key"]; ok {
			if pub, err := ParseKeyPEM(keyData); err == nil && !samePublicKey(c.PublicKey, pub) {
				mismatch("the private key " + strings.TrimSuffix(f.Path, ".crt") + ".key does not belong to this certificate")
				return
			}
		}
		if st, why := issuerStatus(c, e, eff); st != StatusOK {
			f.Status, f.Detail = st, why
			return
		}
		f.Status = Classify(c.NotBefore, c.NotAfter, now, renewBefore)
	case FormatKey:
		if _, err := ParseKeyPEM(data); err != nil {
			corrupt(err)
		}
	case FormatPublicKey:
		pubs, err := ParsePublicKeys(data)
		if err != nil {
			corrupt(err)
			return
		}
		if keyData, ok := eff[strings.TrimSuffix(f.Path, ".pub")+".key"]; ok {
			if priv, err := ParseKeyPEM(keyData); err == nil && !slices.ContainsFunc(pubs, func(p crypto.PublicKey) bool { return samePublicKey(priv, p) }) {
				mismatch("the private key " + strings.TrimSuffix(f.Path, ".pub") + ".key does not belong to any public key in this file")
			}
		}
	case FormatKubeconfig:
		kc, err := ParseKubeconfig(data)
		if err != nil {
			corrupt(err)
			return
		}
		u := kc.Users[0]
		f.Cert = certInfo(u.Cert, u.Name)
		if u.KeyMatches != nil && !*u.KeyMatches {
			mismatch("the embedded client key does not belong to the embedded certificate")
			return
		}
		if st, why := issuerStatus(u.Cert, e, eff); st != StatusOK {
			f.Status, f.Detail = st, why
			return
		}
		f.Status = Classify(u.Cert.NotBefore, u.Cert.NotAfter, now, renewBefore)
	}
}

// issuerStatus checks a leaf's signature against the CA the layout says signed it.
func issuerStatus(c *x509.Certificate, e entry, eff map[string][]byte) (Status, string) {
	if e.ca == "" || e.role == RoleCA || e.role == RoleCACopy {
		return StatusOK, ""
	}
	caData, ok := eff[e.ca+".crt"]
	if !ok {
		return StatusUnknownIssuer, e.ca + ".crt, its issuer, is missing"
	}
	ca, err := ParseCertPEM(caData)
	if err != nil {
		// The CA's own row reports the corruption; this leaf cannot be checked.
		return StatusOK, ""
	}
	if err := c.CheckSignatureFrom(ca); err != nil {
		return StatusUnknownIssuer, "not signed by " + e.ca + ".crt (CN " + ca.Subject.CommonName + ")"
	}
	return StatusOK, ""
}

// missingFiles adds a row for each half of a pair whose other half exists, and for each K0s
// leaf file missing from a partial set: the states in which k0s silently makes new keys or
// vcluster loops on a half-updated Secret.
func missingFiles(eff map[string][]byte, bad map[string]error) []File {
	exists := func(p string) bool {
		_, ok := eff[p]
		_, ok2 := bad[p]
		return ok || ok2
	}
	var out []File
	for _, e := range layout {
		switch e.role {
		case RoleCA, RoleKeyPair:
			a, b := e.name+e.files[0], e.name+e.files[1]
			if exists(a) != exists(b) {
				m, other := a, b
				if exists(a) {
					m, other = b, a
				}
				out = append(out, File{Path: m, Role: e.role, Status: StatusMissing, Detail: "its partner " + other + " exists"})
			}
		}
	}
	n := 0
	for _, p := range K0sLeafFiles {
		if exists(p) {
			n++
		}
	}
	if n > 0 && n < len(K0sLeafFiles) {
		for _, p := range K0sLeafFiles {
			if !exists(p) {
				out = append(out, File{Path: p, Role: RoleK0sLeaf, Status: StatusMissing, Detail: "the other k0s leaf files exist"})
			}
		}
	}
	return out
}

func certInfo(c *x509.Certificate, user string) *CertInfo {
	return &CertInfo{
		Subject:     c.Subject.String(),
		SubjectCN:   c.Subject.CommonName,
		Issuer:      c.Issuer.String(),
		IssuerCN:    c.Issuer.CommonName,
		Serial:      c.SerialNumber.String(),
		NotBefore:   c.NotBefore,
		NotAfter:    c.NotAfter,
		IsCA:        c.IsCA,
		Usages:      usages(c),
		Fingerprint: Fingerprint(c),
		User:        user,
		SubjectName: c.Subject,
		IssuerName:  c.Issuer,
	}
}

func usages(c *x509.Certificate) []string {
	var u []string
	if c.IsCA {
		u = append(u, "CertSign")
	}
	for _, e := range c.ExtKeyUsage {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			u = append(u, "ServerAuth")
		case x509.ExtKeyUsageClientAuth:
			u = append(u, "ClientAuth")
		}
	}
	return u
}
