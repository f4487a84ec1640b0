package pki

import (
	"maps"
	"slices"
)

// Source names where bytes were read.
type Source string

const (
	SourceDisk   Source = "disk"
	SourceSecret Source = "secret"
)

// Store is the content of one place that holds the PKI: the pki dir or the Secret.
type Store struct {
	Source Source
	// Present is false when the pki dir or the Secret does not exist.
	Present bool
	// Files maps a path relative to the pki dir ("etcd/ca.crt") to its bytes.
	Files map[string][]byte
	// Errors holds the files that exist but could not be read, by path.
	Errors map[string]error
	// Skipped counts the entries not looked at (beyond maxUnknown unknown ones per directory).
	Skipped int
	// Dir is the pki dir read (disk); UID and ResourceVersion identify the Secret read.
	Dir             string
	UID             string
	ResourceVersion string
}

// Secret is the <release>-certs Secret as certguard needs it.
type Secret struct {
	Namespace       string            `json:"namespace"`
	Name            string            `json:"name"`
	UID             string            `json:"uid"`
	ResourceVersion string            `json:"resourceVersion"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	Finalizers      []string          `json:"finalizers,omitempty"`
	// Deleting is true when a delete was accepted but finalizers still hold the Secret.
	Deleting bool              `json:"deleting,omitempty"`
	Data     map[string][]byte `json:"data"`
}

// FromSecret maps a Secret's keys to the disk paths vcluster writes them to. A nil Secret is an
// absent one.
func FromSecret(s *Secret) Store {
	st := Store{Source: SourceSecret, Files: map[string][]byte{}, Errors: map[string]error{}}
	if s == nil {
		return st
	}
	st.Present = true
	st.UID, st.ResourceVersion = s.UID, s.ResourceVersion
	for k, v := range s.Data {
		p := FilePath(k)
		if len(v) == 0 {
			// vcluster's downloadCertsFromSecret fails the whole start on an empty certMap value.
			st.Errors[p] = parseErr(ReasonEmpty, "Secret key %s is empty", k)
			continue
		}
		st.Files[p] = v
	}
	return st
}

// paths returns every path either store knows, sorted.
func paths(stores ...Store) []string {
	set := map[string]bool{}
	for _, s := range stores {
		for p := range s.Files {
			set[p] = true
		}
		for p := range s.Errors {
			set[p] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// has reports whether the store holds the path, readable or not.
func (s Store) has(p string) bool {
	_, ok := s.Files[p]
	_, bad := s.Errors[p]
	return ok || bad
}
