package pki

import (
	"bytes"
	"encoding/base64"
	"strings"
)

// KubeconfigData is the embedded data of a kubeconfig that certguard reads, as client-go's
// clientcmd would read it: sigs.k8s.io/yaml, YAML to JSON, then encoding/json into a struct, so
// keys match case-insensitively and the *-data fields are base64.
type KubeconfigData struct {
	Clusters []KubeconfigClusterData
	Users    []KubeconfigUserData
}

// KubeconfigClusterData is one clusters[] entry's cluster.
type KubeconfigClusterData struct {
	Server                   string
	CertificateAuthorityData []byte
}

// KubeconfigUserData is one users[] entry: its name and its user's embedded certificate and key.
type KubeconfigUserData struct {
	Name                  string
	ClientCertificateData []byte
	ClientKeyData         []byte
}

// ScanKubeconfig reads the kubeconfigs that k0s, vcluster and clientcmd write (block YAML of
// plain scalars, 5 KB of which are base64) in one pass over the bytes, about ten times cheaper
// than sigs.k8s.io/yaml, which builds a YAML tree, marshals it to JSON and decodes that again:
// that was 70% of fleet serve's CPU per vcluster Secret. ok is false for anything outside that
// form (quotes, comments, tabs, anchors, tags, multi-line or numeric scalars, duplicate or
// case-folded keys, a field of the wrong kind, bad base64, ...): the caller then reads the bytes
// with sigs.k8s.io/yaml into its own struct, whose result is the semantics. On what it accepts
// the result equals that of sigs.k8s.io/yaml for every struct made of these fields (the
// differential test and FuzzScanKubeconfig hold it to the former implementation).
func ScanKubeconfig(data []byte) (KubeconfigData, bool) {
	s := kcScanner{lines: splitLines(data)}
	var f KubeconfigData
	if s.lines == nil || s.lines[0].indent != 0 {
		return f, false
	}
	var seen [2]bool
	ok := s.mapping(0, func(key, rest []byte, n int) bool {
		switch knownKey(key, seen[:], "clusters", "users") {
		case -1:
			return s.skip(key, rest, n)
		case 0:
			return s.sequence(n, rest, func(c int) bool {
				var cl KubeconfigClusterData
				var seen [1]bool
				ok := s.mapping(c, func(key, rest []byte, n int) bool {
					switch knownKey(key, seen[:], "cluster") {
					case -1:
						return s.skip(key, rest, n)
					case 0:
						return s.cluster(n, rest, &cl)
					}
					return false
				})
				f.Clusters = append(f.Clusters, cl)
				return ok
			})
		case 1:
			return s.sequence(n, rest, func(c int) bool {
				var u KubeconfigUserData
				var seen [2]bool
				ok := s.mapping(c, func(key, rest []byte, n int) bool {
					switch knownKey(key, seen[:], "name", "user") {
					case -1:
						return s.skip(key, rest, n)
					case 0:
						var ok bool
						u.Name, ok = knownString(rest)
						return ok
					case 1:
						return s.user(n, rest, &u)
					}
					return false
				})
				f.Users = append(f.Users, u)
				return ok
			})
		}
		return false
	})
	return f, ok && s.i == len(s.lines)
}

func (s *kcScanner) cluster(n int, rest []byte, cl *KubeconfigClusterData) bool {
	return s.twoFields(n, rest, "server", "certificate-authority-data",
		func(v []byte) (ok bool) { cl.Server, ok = knownString(v); return ok },
		func(v []byte) (ok bool) { cl.CertificateAuthorityData, ok = knownBase64(v); return ok })
}

func (s *kcScanner) user(n int, rest []byte, u *KubeconfigUserData) bool {
	return s.twoFields(n, rest, "client-certificate-data", "client-key-data",
		func(v []byte) (ok bool) { u.ClientCertificateData, ok = knownBase64(v); return ok },
		func(v []byte) (ok bool) { u.ClientKeyData, ok = knownBase64(v); return ok })
}

// twoFields reads a struct-typed value of which two fields are read, by readA and readB; its
// other keys are skipped.
func (s *kcScanner) twoFields(n int, rest []byte, a, b string, readA, readB func(value []byte) bool) bool {
	var seen [2]bool
	return s.object(n, rest, func(key, rest []byte, n int) bool {
		switch knownKey(key, seen[:], a, b) {
		case -1:
			return s.skip(key, rest, n)
		case 0:
			return readA(rest)
		case 1:
			return readB(rest)
		}
		return false
	})
}

// kcLine is a line that is not blank: its indentation and the rest, which never ends in a space.
type kcLine struct {
	indent int
	text   []byte
}

type kcScanner struct {
	lines []kcLine
	i     int // the next line to read
}

// splitLines cuts data into lines, leaving out blank ones; nil when a line ends in a space (YAML
// would trim it; this reader does not go there) or there is no line.
func splitLines(data []byte) []kcLine {
	lines := make([]kcLine, 0, 24)
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		n := 0
		for n < len(line) && line[n] == ' ' {
			n++
		}
		if n == len(line) {
			continue
		}
		// Trailing spaces YAML would trim; deep indentation bounds the recursion below
		// go.yaml.in/yaml/v2's depth limit.
		if line[len(line)-1] == ' ' || n > 64 {
			return nil
		}
		lines = append(lines, kcLine{indent: n, text: line[n:]})
	}
	if len(lines) == 0 {
		return nil
	}
	return lines
}

// field reads the value of key at indentation n; rest is what follows "key:" on its line after
// the spaces, empty when the value is on the next lines (or null).
type field func(key, rest []byte, n int) bool

// mapping reads the block mapping at indentation n whose first line is the current one.
func (s *kcScanner) mapping(n int, f field) bool {
	for s.i < len(s.lines) {
		l := s.lines[s.i]
		if l.indent < n {
			return true
		}
		key, rest, ok := splitKey(l.text)
		if l.indent > n || !ok {
			return false
		}
		s.i++
		if !f(key, rest, n) {
			return false
		}
	}
	return true
}

// object reads a known struct-typed value: {} or a block mapping on the next lines.
func (s *kcScanner) object(n int, rest []byte, f field) bool {
	if len(rest) > 0 {
		return string(rest) == "{}"
	}
	if s.i == len(s.lines) || s.lines[s.i].indent <= n {
		return false // null, or a compact sequence
	}
	return s.mapping(s.lines[s.i].indent, f)
}

// sequence reads a known slice of structs: [] or a block sequence whose items are mappings,
// each read by item at the item's indentation.
func (s *kcScanner) sequence(n int, rest []byte, item func(c int) bool) bool {
	if len(rest) > 0 {
		return string(rest) == "[]"
	}
	if s.i == len(s.lines) || s.lines[s.i].indent < n || !isItem(s.lines[s.i].text) {
		return false
	}
	return s.items(s.lines[s.i].indent, n, func(c int, mapping bool) bool { return mapping && item(c) })
}

// items reads the block sequence at indentation m (a mapping value at n: m == n is the compact
// form). item reads each entry at its indentation c, told whether it is a mapping (else a scalar
// on the dash's line).
func (s *kcScanner) items(m, n int, item func(c int, mapping bool) bool) bool {
	for s.i < len(s.lines) {
		l := s.lines[s.i]
		if l.indent < m {
			return true
		}
		if !isItem(l.text) {
			// A key of the enclosing mapping ends a compact sequence; anything else is not ours.
			return l.indent == m && m == n
		}
		if l.indent > m {
			return false
		}
		t := l.text[1:]
		for len(t) > 0 && t[0] == ' ' {
			t = t[1:]
		}
		c := m + len(l.text) - len(t)
		if _, _, ok := splitKey(t); ok {
			s.lines[s.i] = kcLine{indent: c, text: t} // the item's mapping starts on the dash's line
			if !item(c, true) {
				return false
			}
			continue
		}
		if !validInline(t) {
			return false
		}
		s.i++
		if !item(c, false) {
			return false
		}
	}
	return true
}

func isItem(t []byte) bool { return len(t) >= 2 && t[0] == '-' && t[1] == ' ' }

// skip reads the value of a key no struct reads, whatever its shape among those accepted here:
// the value is dropped, as encoding/json drops it, but it must still be YAML that
// sigs.k8s.io/yaml converts without error.
func (s *kcScanner) skip(_, rest []byte, n int) bool {
	if len(rest) > 0 {
		return validInline(rest)
	}
	if s.i == len(s.lines) {
		return true // null
	}
	l := s.lines[s.i]
	switch {
	case l.indent >= n && isItem(l.text):
		return s.items(l.indent, n, func(c int, mapping bool) bool { return !mapping || s.mapping(c, s.skip) })
	case l.indent > n:
		if _, _, ok := splitKey(l.text); !ok {
			return false // a scalar on the next line
		}
		return s.mapping(l.indent, s.skip)
	}
	return true // null
}

// knownKey returns the index of key among names, or -1 for a key none of them reads. A key
// that a name matches only case-insensitively (as encoding/json would match it), or a name seen
// before in this mapping, is beyond this reader: -2, which every caller turns into a refusal.
func knownKey(key []byte, seen []bool, names ...string) int {
	for i, name := range names {
		if string(key) == name {
			if seen[i] {
				return -2
			}
			seen[i] = true
			return i
		}
		if looseEqual(key, name) {
			return -2
		}
	}
	return -1
}

// looseEqual is true when key equals name ignoring ASCII case, dashes and underscores: wider than
// encoding/json's folding, so that a key it would match is never skipped here.
func looseEqual(key []byte, name string) bool {
	i, j := 0, 0
	for {
		for i < len(key) && (key[i] == '-' || key[i] == '_') {
			i++
		}
		for j < len(name) && (name[j] == '-' || name[j] == '_') {
			j++
		}
		if i == len(key) || j == len(name) {
			return i == len(key) && j == len(name)
		}
		if lower(key[i]) != lower(name[j]) {
			return false
		}
		i, j = i+1, j+1
	}
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// splitKey splits "key:" or "key: value" where key is [A-Za-z][A-Za-z0-9_-]* (at most 64 bytes,
// and not a word YAML 1.1 resolves to a bool or null); rest is the value with its spaces cut.
func splitKey(t []byte) (key, rest []byte, ok bool) {
	i := 0
	for i < len(t) && i <= 64 && (letter(t[i]) || i > 0 && (digit(t[i]) || t[i] == '-' || t[i] == '_')) {
		i++
	}
	if i == 0 || i > 64 || i == len(t) || t[i] != ':' || resolved(t[:i]) {
		return nil, nil, false
	}
	key, rest = t[:i], t[i+1:]
	if len(rest) == 0 {
		return key, rest, true
	}
	if rest[0] != ' ' {
		return nil, nil, false
	}
	for len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return key, rest, true
}

// knownString is a string field's value: a plain scalar that YAML reads as a string.
func knownString(rest []byte) (string, bool) {
	if !plainScalar(rest, false) || resolved(rest) {
		return "", false
	}
	return string(rest), true
}

// knownBase64 is a []byte field's value: a plain scalar of base64, decoded as encoding/json does.
func knownBase64(rest []byte) ([]byte, bool) {
	if !plainScalar(rest, false) || resolved(rest) {
		return nil, false
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(rest)))
	n, err := base64.StdEncoding.Decode(out, rest)
	return out[:n], err == nil
}

// validInline is a value on a key's or a dash's line that no struct reads: a plain scalar (a
// string, or a bool or null word, which the JSON conversion takes as they are), {}, [], or a flow
// mapping of such scalars on one line.
func validInline(t []byte) bool {
	switch {
	case string(t) == "{}" || string(t) == "[]":
		return true
	case t[0] == '{':
		return flowMapping(t)
	}
	return plainScalar(t, false)
}

// flowMapping is {key: value, ...} on one line, keys as splitKey's and values plain scalars
// without ':' (which YAML refuses inside flow collections in some positions).
func flowMapping(t []byte) bool {
	t = t[1:]
	for {
		for len(t) > 0 && t[0] == ' ' {
			t = t[1:]
		}
		end := bytes.IndexAny(t, ",}")
		if end < 0 {
			return false
		}
		_, rest, ok := splitKey(bytes.TrimRight(t[:end], " "))
		if !ok || len(rest) == 0 || !plainScalar(rest, true) {
			return false
		}
		if t[end] == '}' {
			return end == len(t)-1
		}
		t = t[end+1:]
	}
}

// plainScalar is a scalar that starts with a letter, holds only [A-Za-z0-9+/=._:@~-] (no ':'
// in flow) and does not end in ':'. Such a scalar is a string to YAML 1.1 unless resolved.
func plainScalar(t []byte, flow bool) bool {
	if len(t) == 0 || !letter(t[0]) || t[len(t)-1] == ':' {
		return false
	}
	for _, c := range t {
		if !plainByte[c] && (flow || c != ':') {
			return false
		}
	}
	return true
}

// plainByte holds the bytes plainScalar admits anywhere (':' aside).
var plainByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = letter(byte(c)) || digit(byte(c)) || strings.IndexByte("+/=._@~-", byte(c)) >= 0
	}
	return t
}()

// resolved is true for the plain scalars YAML 1.1 (go.yaml.in/yaml/v2's resolve table) reads
// as a bool or null rather than a string, among those plainScalar admits.
func resolved(t []byte) bool {
	switch string(t) {
	case "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
		"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
		"null", "Null", "NULL":
		return true
	}
	return false
}

func letter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func digit(c byte) bool  { return '0' <= c && c <= '9' }
