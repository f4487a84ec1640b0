package pkigentest_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The release binary links pkigen for `certguard demo`, never this package: what only tests use
// stays out of it.
func TestNotInTheReleaseBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/certguard/certguard").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/certguard/certguard/pki/pkigen") {
		t.Fatalf("the release binary no longer links pkigen: is this check still looking at the right package? deps %v", deps)
	}
	if slices.Contains(deps, "github.com/certguard/certguard/pki/pkigen/pkigentest") {
		t.Error("a package of the release binary imports pkigentest: its RSA generator and helpers would ship")
	}
}
