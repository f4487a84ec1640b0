package fleet

import (
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/certguard/certguard/pki"
	"sigs.k8s.io/yaml"
)

// KubeconfigKey is the key of the kubeconfig in the Secrets vcluster exports it to: the default
// vc-<release> in the vcluster's namespace, and every exportKubeConfig.secret (v0.20–v0.23) or
// exportKubeConfig.additionalSecrets entry (v0.24+), any name, any namespace (vcluster's
// pkg/util/kubeconfig: KubeconfigSecretKey; the same Secret also holds certificate-authority,
// client-certificate, client-key and token). Their client certificate is valid one year
// (loft-sh/vcluster#1731), and every copy a user took of it stops working then.
const KubeconfigKey = "config"

// vclusterNameLabel is set by vcluster v0.24+ on the Secrets it exports a kubeconfig to.
const vclusterNameLabel = "vcluster-name"

// kubeconfigSecret is what a kubeconfig Secret is kept for: when its client certificates expire
// and whose they are.
type kubeconfigSecret struct {
	expiry time.Time // the earliest client certificate's NotAfter
	// caFingerprints are the SHA-256 of the clusters' certificate-authority-data; issuerKeyIDs the
	// client certificates' authority key IDs (hex): either names the vcluster whose ca.crt it is.
	caFingerprints []string
	issuerKeyIDs   []string
	vclusterLabel  string // vcluster-name, when vcluster set it
}

// kubeconfigFile is the part of a kubeconfig read here when pki.ScanKubeconfig leaves it to
// sigs.k8s.io/yaml: certificates, never keys or tokens.
type kubeconfigFile struct {
	Clusters []struct {
		Cluster struct {
			CA []byte `json:"certificate-authority-data"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		User struct {
			Cert []byte `json:"client-certificate-data"`
		} `json:"user"`
	} `json:"users"`
}

// data is what the struct read, as pki.ScanKubeconfig returns it.
func (f *kubeconfigFile) data() pki.KubeconfigData {
	var d pki.KubeconfigData
	for _, c := range f.Clusters {
		d.Clusters = append(d.Clusters, pki.KubeconfigClusterData{CertificateAuthorityData: c.Cluster.CA})
	}
	for _, u := range f.Users {
		d.Users = append(d.Users, pki.KubeconfigUserData{ClientCertificateData: u.User.Cert})
	}
	return d
}

// parseKubeconfig reads a Secret whose config key is a kubeconfig with at least one embedded
// client certificate; nil for any other Secret (no config key, not a kubeconfig, only tokens). Its
// series are the client certificates, labelled as the kube-secret source labels a key:
// x509-certificate-exporter reads kubeconfigs from files only (its kubeconfig kind, with
// embedded_kind/embedded_key), and its Secret source parses PEM, PKCS#12 and JKS, so there is
// no exporter label set for a kubeconfig inside a Secret; secret_key="config" names it, as the
// sidecar names the kubeconfigs of a certificate Secret.
func parseKubeconfig(s *pki.Secret) *Secret {
	data, ok := s.Data[KubeconfigKey]
	if !ok {
		return nil
	}
	f, ok := pki.ScanKubeconfig(data)
	if !ok {
		var y kubeconfigFile
		if yaml.Unmarshal(data, &y) != nil {
			return nil
		}
		f = y.data()
	}
	out := newSecret(s)
	kc := &kubeconfigSecret{vclusterLabel: s.Labels[vclusterNameLabel]}
	for _, c := range f.Clusters {
		if ca, err := pki.ParseCertPEM(c.CertificateAuthorityData); err == nil {
			kc.caFingerprints = append(kc.caFingerprints, pki.Fingerprint(ca))
		}
	}
	seen := map[string]bool{}
	var series seriesBuilder
	for _, u := range f.Users {
		c, err := pki.ParseCertPEM(u.ClientCertificateData)
		if err != nil {
			continue
		}
		if fp := pki.Fingerprint(c); !seen[fp] { // two users with one certificate: one series
			seen[fp] = true
			series.add(out, KubeconfigKey, c)
		}
		if kc.expiry.IsZero() || c.NotAfter.Before(kc.expiry) {
			kc.expiry = c.NotAfter
		}
		if len(c.AuthorityKeyId) > 0 {
			kc.issuerKeyIDs = append(kc.issuerKeyIDs, hex.EncodeToString(c.AuthorityKeyId))
		}
	}
	if kc.expiry.IsZero() {
		return nil
	}
	series.done(out)
	out.kubeconfig = kc
	return out
}

// owners indexes the certificate Secrets by their CA, to attribute kubeconfig Secrets.
type owners struct {
	byFingerprint, byKeyID map[string][]*Secret
}

func indexOwners(certSecrets []*Secret) owners {
	o := owners{byFingerprint: map[string][]*Secret{}, byKeyID: map[string][]*Secret{}}
	for _, s := range certSecrets {
		if s.caFingerprint != "" {
			o.byFingerprint[s.caFingerprint] = append(o.byFingerprint[s.caFingerprint], s)
		}
		if s.caKeyID != "" {
			o.byKeyID[s.caKeyID] = append(o.byKeyID[s.caKeyID], s)
		}
	}
	return o
}

// vcluster is the release a kubeconfig Secret belongs to: the vcluster whose ca.crt is the
// kubeconfig's certificate-authority-data, else whose ca.crt issued its client certificate (an
// insecure export drops the CA data). When several vclusters share that CA (cloned PKIs), the one
// in the Secret's namespace, then the one its vcluster-name label names; "" when still none or
// several: unattributed.
func (o owners) vcluster(s *Secret) string {
	if c := o.owner(s); c != nil {
		return c.facts.Release
	}
	return ""
}

// owner is the certificate Secret of the vcluster a kubeconfig Secret belongs to (vcluster); nil
// when none or several.
func (o owners) owner(s *Secret) *Secret {
	var cands []*Secret
	for _, fp := range s.kubeconfig.caFingerprints {
		cands = append(cands, o.byFingerprint[fp]...)
	}
	if len(cands) == 0 {
		for _, id := range s.kubeconfig.issuerKeyIDs {
			cands = append(cands, o.byKeyID[id]...)
		}
	}
	narrow := func(keep func(*Secret) bool) {
		if n := slices.DeleteFunc(slices.Clone(cands), func(c *Secret) bool { return !keep(c) }); len(n) > 0 {
			cands = n
		}
	}
	narrow(func(c *Secret) bool { return c.namespace == s.namespace })
	if l := s.kubeconfig.vclusterLabel; l != "" {
		narrow(func(c *Secret) bool { return c.facts.Release == l })
	}
	slices.SortFunc(cands, func(a, b *Secret) int { return strings.Compare(a.key, b.key) })
	cands = slices.CompactFunc(cands, func(a, b *Secret) bool { return a.key == b.key })
	if len(cands) != 1 {
		return nil
	}
	return cands[0]
}
