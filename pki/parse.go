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

	"sigs.k8s.io/yaml"
)

// Reason codes say why bytes could not be used. They are a stable contract: they appear in
// JSON output and, for the sidecar, in metric labels.
const (
	ReasonBadPEM        = "bad_pem"
	ReasonNoCertificate = "no_certificate"
	ReasonBadKey        = "bad_key"
	ReasonBadKubeconfig = "bad_kubeconfig"
	ReasonUnreadable    = "unreadable"
	ReasonEmpty         = "empty"
)

// ParseError is bad input, as data: parsing never fails on bytes, it reports them.
type ParseError struct {
	Reason string
	Detail string
}

func (e *ParseError) Error() string { return e.Reason + ": " + e.Detail }

func parseErr(reason, format string, a ...any) error {
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

// ParseKeyPEM returns the public half of a PEM private key (PKCS#1, SEC 1 or PKCS#8). The
// private key itself never leaves this function, and errors never quote its bytes.
//
// RSA and EC keys are read structurally: every field must decode, but the key's arithmetic is
// not re-checked. crypto/x509's full parse runs the FIPS 140 consistency checks (112 µs an RSA
// key) or a scalar multiplication (EC), which made up most of a healthy start's CPU; certguard
// needs the public half only, to compare it with the certificate's.
func ParseKeyPEM(data []byte) (crypto.PublicKey, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, parseErr(ReasonEmpty, "file is empty")
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, parseErr(ReasonBadKey, "no PEM block found")
	}
	switch b.Type {
	case "RSA PRIVATE KEY":
		var k pkcs1PrivateKey
		if rest, err := asn1.Unmarshal(b.Bytes, &k); err != nil || len(rest) > 0 || k.N == nil || k.N.Sign() <= 0 || k.E < 3 || k.D == nil || k.P == nil || k.Q == nil {
			return nil, parseErr(ReasonBadKey, "RSA private key does not parse")
		}
		return &rsa.PublicKey{N: k.N, E: k.E}, nil
	case "EC PRIVATE KEY":
		var k ecPrivateKey
		if rest, err := asn1.Unmarshal(b.Bytes, &k); err == nil && len(rest) == 0 && len(k.PrivateKey) > 0 && k.PublicKey.BitLength > 0 {
			if curve := namedCurve(k.NamedCurveOID); curve != nil {
				if pub, err := ecdsa.ParseUncompressedPublicKey(curve, k.PublicKey.Bytes); err == nil {
					return pub, nil
				}
			}
		}
		return fullParse(x509.ParseECPrivateKey(b.Bytes))
	case "PRIVATE KEY":
		return fullParse(x509.ParsePKCS8PrivateKey(b.Bytes))
	}
	return nil, parseErr(ReasonBadKey, "unexpected PEM block %q", b.Type)
}

// fullParse takes a key parsed by crypto/x509 and returns its public half.
func fullParse[K any](key K, err error) (crypto.PublicKey, error) {
	if err != nil {
		// The parser's message names the structure, never the key's content.
		return nil, parseErr(ReasonBadKey, "private key does not parse")
	}
	signer, ok := any(key).(crypto.Signer)
	if !ok {
		return nil, parseErr(ReasonBadKey, "unsupported private key type %T", key)
	}
	return signer.Public(), nil
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

// ParsePublicKeyPEM parses sa.pub-style PKIX (or PKCS#1) public keys.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, parseErr(ReasonBadKey, "no PEM block found")
	}
	switch b.Type {
	case "PUBLIC KEY":
		if k, err := x509.ParsePKIXPublicKey(b.Bytes); err == nil {
			return k, nil
		}
	case "RSA PUBLIC KEY":
		if k, err := x509.ParsePKCS1PublicKey(b.Bytes); err == nil {
			return k, nil
		}
	}
	return nil, parseErr(ReasonBadKey, "public key does not parse")
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

// ParseKubeconfig reads the embedded client certificates of a kubeconfig.
func ParseKubeconfig(data []byte) (*Kubeconfig, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, parseErr(ReasonEmpty, "file is empty")
	}
	var f kubeconfigFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, parseErr(ReasonBadKubeconfig, "not a kubeconfig: %s", firstLine(err.Error()))
	}
	kc := &Kubeconfig{}
	if len(f.Clusters) > 0 {
		kc.Server = f.Clusters[0].Cluster.Server
	}
	for _, u := range f.Users {
		if len(u.User.ClientCertificateData) == 0 {
			continue
		}
		c, err := ParseCertPEM(u.User.ClientCertificateData)
		if err != nil {
			return nil, parseErr(ReasonBadKubeconfig, "user %q: %v", u.Name, err)
		}
		ku := KubeconfigUser{Name: u.Name, Cert: c}
		if len(u.User.ClientKeyData) > 0 {
			pub, err := ParseKeyPEM(u.User.ClientKeyData)
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

// reasonOf extracts the reason code of a parse error.
func reasonOf(err error) string {
	var pe *ParseError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ReasonUnreadable
}
