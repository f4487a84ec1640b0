package pki

import (
	"strings"
	"time"
)

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
