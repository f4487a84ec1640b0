package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Sum is the SHA-256 and size of some bytes. A manifest holds sums only, never the bytes, so it
// can be logged.
type Sum struct {
	SHA256 string
	Size   int
}

func sum(b []byte) Sum {
	h := sha256.Sum256(b)
	return Sum{SHA256: hex.EncodeToString(h[:]), Size: len(b)}
}

// Manifest records every original byte of a vcluster's PKI: each file of the pki dir (by path
// relative to it) and each key of the Secret.
type Manifest struct {
	Disk   map[string]Sum
	Secret map[string]Sum
}

// TakeManifest hashes the pki dir and the Secret's data (nil: no Secret).
func TakeManifest(pkiDir string, secret map[string][]byte) (Manifest, error) {
	m := Manifest{Secret: map[string]Sum{}}
	var err error
	if m.Disk, err = hashTree(pkiDir); err != nil {
		return m, err
	}
	for k, v := range secret {
		m.Secret[k] = sum(v)
	}
	return m, nil
}

// Equal reports whether two manifests are identical.
func (m Manifest) Equal(o Manifest) bool {
	eq := func(a, b map[string]Sum) bool {
		if len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if b[k] != v {
				return false
			}
		}
		return true
	}
	return eq(m.Disk, o.Disk) && eq(m.Secret, o.Secret)
}

// hashTree hashes every regular file under dir (a missing dir is empty).
func hashTree(dir string) (map[string]Sum, error) {
	out := map[string]Sum{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && os.IsNotExist(err) {
				return filepath.SkipAll
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(r)] = sum(b)
		return nil
	})
	return out, err
}

// Lost lists what of the manifest is neither in place nor in a backup: a disk file must be at
// its path in the pki dir or in some <backupDir>/<ts>/pki/; a Secret key must be in the Secret
// now or in some <backupDir>/<ts>/secret.json. It returns the missing entries and their bytes.
func (m Manifest) Lost(pkiDir, backupDir string, secretNow map[string][]byte) (lost []string, bytes int, err error) {
	disk, err := hashTree(pkiDir)
	if err != nil {
		return nil, 0, err
	}
	diskCopies := []map[string]Sum{disk}
	secretCopies := []map[string]Sum{{}}
	for k, v := range secretNow {
		secretCopies[0][k] = sum(v)
	}
	backups, _ := filepath.Glob(filepath.Join(backupDir, "*"))
	for _, b := range backups {
		if t, err := hashTree(filepath.Join(b, "pki")); err == nil {
			diskCopies = append(diskCopies, t)
		} else {
			return nil, 0, err
		}
		raw, err := os.ReadFile(filepath.Join(b, "secret.json"))
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			return nil, 0, err
		}
		var s struct {
			Data map[string][]byte `json:"data"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, 0, fmt.Errorf("%s: %w", filepath.Join(b, "secret.json"), err)
		}
		c := map[string]Sum{}
		for k, v := range s.Data {
			c[k] = sum(v)
		}
		secretCopies = append(secretCopies, c)
	}
	check := func(kind string, want map[string]Sum, copies []map[string]Sum) {
		for _, k := range slices.Sorted(maps.Keys(want)) {
			if !slices.ContainsFunc(copies, func(c map[string]Sum) bool { return c[k] == want[k] }) {
				lost = append(lost, kind+":"+k)
				bytes += want[k].Size
			}
		}
	}
	check("disk", m.Disk, diskCopies)
	check("secret", m.Secret, secretCopies)
	return lost, bytes, nil
}

// Files lists the paths of a manifest's disk side, for messages.
func (m Manifest) Files() string {
	return strings.Join(slices.Sorted(maps.Keys(m.Disk)), " ")
}
