package fleet

import "testing"

// TestKubeconfigOwner: which vcluster a kubeconfig Secret is attributed to when CAs are shared
// (cloned PKIs) or unknown.
func TestKubeconfigOwner(t *testing.T) {
	certs := func(ns, release, fp, keyID string) *Secret {
		return &Secret{key: ns + "/" + release + "-certs", namespace: ns, name: release + "-certs",
			facts: Facts{Namespace: ns, Release: release}, caFingerprint: fp, caKeyID: keyID}
	}
	own := indexOwners([]*Secret{certs("ns1", "a", "X", "kx"), certs("ns2", "b", "X", "kx"), certs("ns3", "c", "Y", "ky")})
	cases := []struct {
		name, ns, label string
		fps, keyIDs     []string
		want            string
	}{
		{"CA of one vcluster", "elsewhere", "", []string{"Y"}, nil, "c"},
		{"shared CA, the Secret's namespace decides", "ns2", "", []string{"X"}, nil, "b"},
		{"shared CA, elsewhere: unattributed", "elsewhere", "", []string{"X"}, nil, ""},
		{"shared CA, the vcluster-name label decides", "elsewhere", "a", []string{"X"}, nil, "a"},
		{"no CA data: the issuer's key ID", "elsewhere", "", nil, []string{"ky"}, "c"},
		{"CA data wins over the issuer", "elsewhere", "", []string{"Y"}, []string{"kx"}, "c"},
		{"unknown CA", "ns1", "", []string{"Z"}, []string{"kz"}, ""},
	}
	for _, c := range cases {
		s := &Secret{namespace: c.ns, name: "kc", kubeconfig: &kubeconfigSecret{caFingerprints: c.fps, issuerKeyIDs: c.keyIDs, vclusterLabel: c.label}}
		if got := own.vcluster(s); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
