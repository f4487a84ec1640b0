package pki

import "time"

// ExpirationInfo is kubeadm's `certs check-expiration -o json` shape
// (output.kubeadm.k8s.io CertificateExpirationInfo), with certguard's status and drift added.
type ExpirationInfo struct {
	Kind                   string            `json:"kind"`
	APIVersion             string            `json:"apiVersion"`
	Now                    time.Time         `json:"now"`
	Certificates           []ExpirationEntry `json:"certificates"`
	CertificateAuthorities []ExpirationEntry `json:"certificateAuthorities"`
	// K0s is the k0s the report was judged for (omitted: unknown).
	K0s K0s `json:"k0s,omitzero"`
}

// ExpirationEntry is one certificate; residualTime is in seconds.
type ExpirationEntry struct {
	Name              string    `json:"name"`
	Subject           string    `json:"subject,omitempty"`
	ExpirationDate    time.Time `json:"expirationDate,omitzero"`
	ResidualTime      int64     `json:"residualTime"`
	CAName            string    `json:"caName,omitempty"`
	ExternallyManaged bool      `json:"externallyManaged"`
	Missing           bool      `json:"missing"`
	Status            Status    `json:"status"`
	Reason            Reason    `json:"reason,omitempty"`
	Detail            string    `json:"detail,omitempty"`
	Role              Role      `json:"role"`
	Source            Source    `json:"source,omitempty"`
	Drift             Drift     `json:"drift,omitempty"`
	// RewrittenAtBoot: k0s writes this file anew at the next start (Report.RewrittenAtBoot).
	RewrittenAtBoot bool `json:"rewrittenAtBoot,omitempty"`
}

// Expiration converts a report to the kubeadm-shaped JSON document.
func Expiration(r *Report) ExpirationInfo {
	out := ExpirationInfo{Kind: "CertificateExpirationInfo", APIVersion: "output.kubeadm.k8s.io/v1alpha3", Now: r.Now,
		Certificates: []ExpirationEntry{}, CertificateAuthorities: []ExpirationEntry{}, K0s: r.K0s}
	for _, f := range r.Files {
		// A file without a certificate (a key, sa.pub) is listed when it is not ok, whatever the
		// reason: check exits 4 for it, so the JSON must say which file and why.
		if f.Cert == nil && f.Status == StatusOK {
			continue
		}
		e := ExpirationEntry{Name: f.Path, Missing: f.Status == StatusMissing, Status: f.Status, Reason: f.Reason, Detail: f.Detail,
			Role: f.Role, Source: f.Source, Drift: f.Drift, RewrittenAtBoot: r.RewrittenAtBoot(f)}
		if en, ok := roleOf(f.Path); ok && en.ca != "" {
			e.CAName = en.ca
		}
		if f.Cert != nil {
			e.Subject = f.Cert.Subject
			e.ExpirationDate = f.Cert.NotAfter.UTC()
			e.ResidualTime = max(int64(f.Cert.NotAfter.Sub(r.Now)/time.Second), 0)
		}
		if f.Role == RoleCA || f.Role == RoleCACopy || (f.Cert != nil && f.Cert.IsCA) {
			out.CertificateAuthorities = append(out.CertificateAuthorities, e)
		} else {
			out.Certificates = append(out.Certificates, e)
		}
	}
	return out
}
