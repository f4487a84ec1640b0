package pki

import (
	"fmt"
	"slices"
)

// CodeK0sPartial: the Secret holds some of the 14 k0s files but not all, which makes every start
// of vcluster fail (see markK0sPartial).
const CodeK0sPartial Code = "k0s-partial"

// markK0sPartial holds the invariant vcluster's syncer needs: the Secret holds all 14 k0s files
// or none. vcluster v0.19–v0.25 (pkg/setup/initialize.go UpdateSecretWithK0sCerts) adds them
// only when the Secret holds none; when it holds some, every one must equal the file on disk
// (secretIsUpToDate), and a key that is absent never does. initialize() then fails with "it was
// already updated, will try to fetch it again" every 5 s for 2 minutes, and the pod restarts into
// the same state, although every certificate may be healthy. vcluster itself writes the 14 in
// one update and certguard removes them in one, so a partial set is never a passing state.
//
// The rows of the k0s files the Secret lacks are marked missing (unless already worse), so that
// BuildPlan removes all 14 from both places under its usual rules, and k0s re-issues them.
func markK0sPartial(r *Report) {
	n, partial := r.k0sPartial()
	if !partial {
		return
	}
	for i := range r.Files {
		f := &r.Files[i]
		if f.InSecret || f.Status != StatusOK || !slices.Contains(K0sLeafFiles, f.Path) {
			continue
		}
		f.Status = StatusMissing
		f.Detail = fmt.Sprintf("not in the Secret, which holds %d of the 14 k0s files: vcluster fails every start "+
			"(\"already updated\") until it holds all or none", n)
	}
}

// k0sPartial reports whether the Secret holds some but not all of the 14 k0s files.
func (r *Report) k0sPartial() (n int, partial bool) {
	if !r.secret.Present {
		return 0, false
	}
	for _, p := range K0sLeafFiles {
		if r.secret.has(p) {
			n++
		}
	}
	return n, n > 0 && n < len(K0sLeafFiles)
}
