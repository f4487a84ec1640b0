//go:build failpoint

package pki

import (
	"os"
	"syscall"
)

// EnvFailpoint arms the executor's failpoint from CERTGUARD_FAILPOINT: the process SIGKILLs
// itself when it reaches the named stage ("during-backup", "after-backup", "after-step-N").
// Only binaries built with -tags failpoint have it; the crash tests build one.
func EnvFailpoint() func(string) error {
	want := os.Getenv("CERTGUARD_FAILPOINT")
	if want == "" {
		return nil
	}
	return func(name string) error {
		if name == want {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal arrives before anything else runs
		}
		return nil
	}
}
