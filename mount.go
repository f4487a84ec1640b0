package main

import (
	"bufio"
	"bytes"
	"path/filepath"
	"strings"
)

// mountPoint returns the mount point under which path lies, given /proc/self/mountinfo. In a
// container, "/" means the pki dir is on the container's own filesystem, not on a volume: a
// forgotten volumeMounts entry, which would make certguard repair a copy k0s never reads.
func mountPoint(path string, mountinfo []byte) string {
	path = filepath.Clean(path)
	best := ""
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return best
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
