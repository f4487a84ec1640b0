//go:build !failpoint

package pki

// EnvFailpoint is nil in release builds: no environment variable can make certguard crash.
func EnvFailpoint() func(string) error { return nil }
