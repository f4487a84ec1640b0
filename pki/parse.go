package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"k8s.io/client-go/util/keyutil"
	"sigs.k8s.io/yaml"
)

// Reason says why a file's bytes could not be used. The values are a stable contract: they
// appear in JSON output and, for the sidecar, in metric labels.
type Reason string

const (
	ReasonBadPEM        Reason = "bad_pem"
	ReasonNoCertificate Reason = "no_certificate"
	ReasonBadKey        Reason = "bad_key"
	ReasonBadKubeconfig Reason = "bad_kubeconfig"
	ReasonUnreadable    Reason = "unreadable"
	ReasonEmpty         Reason = "empty"
	ReasonNotRegular    Reason = "not_regular" // a symlink, FIFO, socket, device or directory
	ReasonTooLarge      Reason = "too_large"
)

// ParseError is bad input, as data: parsing never fails on bytes, it reports them.
type ParseError struct {
	Reason Reason
	Detail string
}

func (e *ParseError) Error() string { return e.Detail }

func parseErr(reason Reason, format string, a ...any) error {
	return &ParseError{Reason: reason, Detail: fmt.Sprintf(format, a...)}
}

// ParseCertPEM returns the first certificate of a PEM file. Anything after it (a chain) is
// ignored, like kube-apiserver does for --tls-cert-file's leaf.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, parseErr(ReasonEmpty, "file is empty")
	}
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if bytes.Equal(rest, data) {
				return nil, parseErr(ReasonBadPEM, "no PEM block found")
			}
			return nil, parseErr(ReasonNoCertificate, "no CERTIFICATE block found")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, parseErr(ReasonBadPEM, "certificate does not parse: %v", err)
		}
		return c, nil
	}
}

// ParseKeyPEM returns the public half of a PEM private key. The private key itself never leaves
// this function, and errors never quote its bytes.
//
// It accepts at least every form the readers of these files accept, so that a full reset can
// never follow from a parser disagreement: keyutil.ParsePrivateKeyPEM (kube-apiserver's
// --service-account-signing-key-file, vcluster) skips non-key blocks such as CERTIFICATE or the
// EC PARAMETERS block that `openssl ecparam -genkey` writes first; crypto/tls takes any block
// whose type ends in "PRIVATE KEY" and tries PKCS#1, PKCS#8 and SEC 1 whatever its label; cfssl
// (k0s's signer) tries PKCS#8, PKCS#1 and SEC 1 too. Here every block whose type ends in
// "PRIVATE KEY" is tried with all three, and the first that parses wins.
//
// RSA and EC keys labelled as such are read structurally first: every field must decode, but the
// key's arithmetic is not re-checked. crypto/x509's full parse runs the FIPS 140 consistency
// checks (112 µs an RSA key) or a scalar multiplication (EC), which made up most of a healthy
// start's CPU; certguard needs the public half only, to compare it with the certificate's.
func ParseKeyPEM(data []byte) (crypto.PublicKey, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, parseErr(ReasonEmpty, "file is empty")
	}
	rest, blocks := data, 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks++
		if b.Type != "PRIVATE KEY" && !strings.HasSuffix(b.Type, " PRIVATE KEY") {
			continue // CERTIFICATE, EC PARAMETERS, ...: tolerated, as keyutil and crypto/tls do
		}
		if pub := structuralPublic(b); pub != nil {
			return pub, nil
		}
		if pub := anyFormPublic(b.Bytes); pub != nil {
			return pub, nil
		}
	}
	if blocks == 0 {
		return nil, parseErr(ReasonBadKey, "no PEM block found")
	}
	return nil, parseErr(ReasonBadKey, "no PEM block holds a private key that parses as PKCS#1, PKCS#8 or SEC 1")
}

// structuralPublic is the fast path for RSA and EC keys labelled as such; nil when it does not
// apply or the structure does not decode (the full parsers then decide).
func structuralPublic(b *pem.Block) crypto.PublicKey {
	switch b.Type {
	case "RSA PRIVATE KEY":
		var k pkcs1PrivateKey
		if rest, err := asn1.Unmarshal(b.Bytes, &k); err == nil && len(rest) == 0 && k.N != nil && k.N.Sign() > 0 && k.E >= 3 && k.D != nil && k.P != nil && k.Q != nil {
			return &rsa.PublicKey{N: k.N, E: k.E}
		}
	case "EC PRIVATE KEY":
		var k ecPrivateKey
		if rest, err := asn1.Unmarshal(b.Bytes, &k); err == nil && len(rest) == 0 && len(k.PrivateKey) > 0 && k.PublicKey.BitLength > 0 {
			if curve := namedCurve(k.NamedCurveOID); curve != nil {
				if pub, err := ecdsa.ParseUncompressedPublicKey(curve, k.PublicKey.Bytes); err == nil {
					return pub
				}
			}
		}
	}
	return nil
}

// anyFormPublic tries the three DER forms of a private key, whatever the block's label.
func anyFormPublic(der []byte) crypto.PublicKey {
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k.Public()
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s.Public()
		}
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k.Public()
	}
	return nil
}

// pkcs1PrivateKey and ecPrivateKey are the ASN.1 structures of RFC 8017 and RFC 5915.
type pkcs1PrivateKey struct {
	Version          int
	N                *big.Int
	E                int
	D, P, Q          *big.Int
	Dp, Dq, Qinv     *big.Int
	AdditionalPrimes []asn1.RawValue `asn1:"optional,omitempty"`
}

type ecPrivateKey struct {
	Version       int
	PrivateKey    []byte
	NamedCurveOID asn1.ObjectIdentifier `asn1:"optional,explicit,tag:0"`
	PublicKey     asn1.BitString        `asn1:"optional,explicit,tag:1"`
}

func namedCurve(oid asn1.ObjectIdentifier) elliptic.Curve {
	switch {
	case oid.Equal(asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}):
		return elliptic.P256()
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 0, 34}):
		return elliptic.P384()
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 0, 35}):
		return elliptic.P521()
	}
	return nil
}

// ParsePublicKeys reads sa.pub the way kube-apiserver reads --service-account-key-file
// (keyutil.ParsePublicKeysPEM): every block that holds an RSA or EC public key, a certificate or
// a private key counts, other blocks are skipped.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, parseErr(ReasonEmpty, "file is empty")
	}
	keys, err := keyutil.ParsePublicKeysPEM(data)
	if err != nil {
		return nil, parseErr(ReasonBadKey, "no PEM block holds an RSA or EC public key")
	}
	out := make([]crypto.PublicKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, k)
	}
	return out, nil
}

// samePublicKey reports whether two public keys are equal.
func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// Kubeconfig is what certguard needs from a kubeconfig: the embedded client certificate of
// each user and the server. Key data is checked against the certificate and then dropped.
type Kubeconfig struct {
	Server string
	Users  []KubeconfigUser
}

// KubeconfigUser is one user entry with embedded credentials.
type KubeconfigUser struct {
	Name string
	Cert *x509.Certificate
	// KeyMatches is nil when the user has no embedded key.
	KeyMatches *bool
}

type kubeconfigFile struct {
	Clusters []struct {
		Cluster struct {
			Server string `json:"server"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			ClientCertificateData []byte `json:"client-certificate-data"`
			ClientKeyData         []byte `json:"client-key-data"`
		} `json:"user"`
	} `json:"users"`
}

// data is what the struct read, as ScanKubeconfig returns it.
func (f *kubeconfigFile) data() KubeconfigData {
	var d KubeconfigData
	for _, c := range f.Clusters {
		d.Clusters = append(d.Clusters, KubeconfigClusterData{Server: c.Cluster.Server})
	}
	for _, u := range f.Users {
		d.Users = append(d.Users, KubeconfigUserData{Name: u.Name, ClientCertificateData: u.User.ClientCertificateData, ClientKeyData: u.User.ClientKeyData})
	}
	return d
}

// ParseKubeconfig reads the embedded client certificates of a kubeconfig, and checks each
// user's embedded key against its certificate: through ScanKubeconfig when it takes the bytes,
// else through sigs.k8s.io/yaml as clientcmd does.
func ParseKubeconfig(data []byte) (*Kubeconfig, error) {
	return parseKubeconfig(data, ParseCertPEM, true)
}

func parseKubeconfig(data []byte, parseCert func([]byte) (*x509.Certificate, error), keys bool) (*Kubeconfig, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, parseErr(ReasonEmpty, "file is empty")
	}
	f, ok := ScanKubeconfig(data)
	if !ok {
		var y kubeconfigFile
		if err := yaml.Unmarshal(data, &y); err != nil {
			return nil, parseErr(ReasonBadKubeconfig, "not a kubeconfig: %s", firstLine(err.Error()))
		}
		f = y.data()
	}
	kc := &Kubeconfig{}
	if len(f.Clusters) > 0 {
		kc.Server = f.Clusters[0].Server
	}
	for _, u := range f.Users {
		if len(u.ClientCertificateData) == 0 {
			continue
		}
		c, err := parseCert(u.ClientCertificateData)
		if err != nil {
			return nil, parseErr(ReasonBadKubeconfig, "user %q: %v", u.Name, err)
		}
		ku := KubeconfigUser{Name: u.Name, Cert: c}
		if keys && len(u.ClientKeyData) > 0 {
			pub, err := ParseKeyPEM(u.ClientKeyData)
			match := err == nil && samePublicKey(c.PublicKey, pub)
			ku.KeyMatches = &match
		}
		kc.Users = append(kc.Users, ku)
	}
	if len(kc.Users) == 0 {
		return nil, parseErr(ReasonBadKubeconfig, "no user with an embedded client certificate")
	}
	return kc, nil
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Fingerprint is the SHA-256 of a certificate's DER, the way openssl prints it without colons.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// reasonOf extracts the reason code of a read or parse error.
func reasonOf(err error) Reason {
	var pe *ParseError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	var ee *EntryError
	if errors.As(err, &ee) {
		return ee.Reason
	}
	return ReasonUnreadable
}
