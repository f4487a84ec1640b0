package pki

import (
	"path"
	"strings"
	"time"
)

// Format is what a file of the pki dir (or a Secret key) holds, by the extensions of the layout
// table: what Inspect parses it as. It is the one place that reads a kind from a name, so that
// no caller guesses a kubeconfig from a ".conf" of its own.
type Format string

const (
	FormatCert       Format = "cert"       // .crt: PEM certificates
	FormatKey        Format = "key"        // .key: a PEM private key
	FormatPublicKey  Format = "public-key" // .pub: PEM public keys (sa.pub, etcd/jwt.pub)
	FormatKubeconfig Format = "kubeconfig" // .conf: a kubeconfig with embedded credentials
	FormatOther      Format = "other"      // anything else: reported, never parsed
)

// FormatOf is the format of the file at p (relative to the pki dir, or a Secret key's path).
func FormatOf(p string) Format {
	switch path.Ext(p) {
	case ".crt":
		return FormatCert
	case ".key":
		return FormatKey
	case ".pub":
		return FormatPublicKey
	case ".conf":
		return FormatKubeconfig
	}
	return FormatOther
}

// Format is the file's format.
func (f File) Format() Format { return FormatOf(f.Path) }

// IsCertSecret tells a vcluster certificate Secret from other Secrets without relying on labels,
// which vcluster sets only from v0.24 on.
func IsCertSecret(name string, labels map[string]string, keys func(string) bool) bool {
	if !strings.HasSuffix(name, "-certs") {
		return false
	}
	return labels["app"] == "vcluster" || (keys("ca.crt") && keys("apiserver.crt"))
}

// Describe says in one phrase what is wrong with a file at now, in the plan's words (the fleet's
// rows say it the same way).
func (f File) Describe(now time.Time) string { return describe(f, now) }
