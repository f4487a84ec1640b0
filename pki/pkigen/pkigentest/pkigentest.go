// Package pkigentest is what only tests, the e2e harness and the benchmarks take from the PKI
// generator: RSA keys, loading a CA from PEM, and manifests of a tree. pkigen itself is linked
// into the release binary by `certguard demo`; keeping these here keeps them out of it (RSA key
// generation alone is 32 KiB of the stripped binary). No package of the release binary may
// import this one.
package pkigentest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/certguard/certguard/pki/pkigen"
)

// RSA makes an RSA-2048 key like vcluster and k0s do (cfssl's default), for pkigen.Options.Key.
func RSA() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) }

// KeyFunc is RSA when rsa is set, else nil (pkigen's ECDSA P-256): for tables over both.
func KeyFunc(rsa bool) func() (crypto.Signer, error) {
	if rsa {
		return RSA
	}
	return nil
}

// LoadCA reads a CA pair from PEM, e.g. to re-issue leaves under it with pkigen.New. The key
// is read as crypto/tls reads it (PKCS#1, SEC 1 or PKCS#8) and must match the certificate.
func LoadCA(crtPEM, keyPEM []byte) (*pkigen.CA, error) {
	pair, err := tls.X509KeyPair(crtPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("load CA: %T cannot sign", pair.PrivateKey)
	}
	return &pkigen.CA{Cert: pair.Leaf, Key: signer}, nil
}

// Manifest is the SHA-256 of every file under dir by slash-separated relative path, to compare
// a tree before and after; a missing dir has an empty manifest.
func Manifest(dir string) (map[string]string, error) {
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipAll
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			// Never followed: a symlink is its target text.
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			m[filepath.ToSlash(rel)] = "symlink:" + l
			return nil
		case !d.Type().IsRegular():
			m[filepath.ToSlash(rel)] = "special:" + d.Type().String() // never opened: a FIFO would block
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		m[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		return nil
	})
	return m, err
}
