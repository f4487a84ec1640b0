package pki

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// K0s is what certguard knows of the k0s that starts on this PKI. The zero value is "unknown",
// and unknown behaves as certguard always did: the Secret is judged as the next start's input.
type K0s struct {
	// Version is the k0s version as it was given or read ("v1.35.1+k0s.0", "v1.35.1-k0s.0");
	// empty when unknown.
	Version string `json:"version,omitempty"`
	// From says where it was learnt: K0sFromFlag or K0sFromPod; empty when unknown.
	From string `json:"from,omitempty"`
	// RenewsLeaves: this k0s re-signs, at every start and expired or not, every leaf it issues
	// whose issuer CN equals ca.crt's, as long as ca.key exists (k0s ≥ v1.35.1).
	RenewsLeaves bool `json:"renewsLeaves"`
}

// DriftStale: the Secret's copy differs from the disk's, and nothing reads it: k0s re-signs the
// file at every start (k0s ≥ v1.35.1), and vcluster ≤ v0.25 never writes it back.
const DriftStale Drift = "stale"

// Finding codes of a k0s that renews its own leaves.
const (
	CodeK0sRenews   Code = "k0s-renews"   // a file that is not ok is re-signed by k0s at this start
	CodeSecretStale Code = "secret-stale" // the Secret's copies of what k0s re-signs are stale
)

// Where a K0s was learnt.
const (
	K0sFromFlag = "flag" // --k0s-version / CERTGUARD_K0S_VERSION
	K0sFromPod  = "pod"  // the k0s image in this pod's spec
)

// Known reports whether the version is known.
func (k K0s) Known() bool { return k.Version != "" }

// k0sRenewsLeavesSince is the first k0s that renews leaves under a CA it did not make itself:
// pkg/certificate/manager.go isManagedByK0s gained the case "issuer CN == ca.crt's CN and ca.key
// exists" in commit e9260d20 (k0sproject/k0s#6378, merged by #6380). `git tag --contains
// e9260d20` lists v1.35.1-rc.0+k0s.0 and every later tag, no v1.34 or earlier (not backported:
// v1.34.10+k0s.0 and v1.33.13+k0s.1 still switch on the CN alone), and there is no v1.35.0.
var k0sRenewsLeavesSince = version.MustParseSemantic("1.35.1")

// ParseK0sVersion reads a k0s version as k0s tags it ("v1.35.1+k0s.0"), as its image tags
// spell it ("v1.35.1-k0s.0", a "+" being no valid tag character), or bare ("1.35.1"), and
// judges whether that k0s renews its own leaves.
func ParseK0sVersion(s string) (K0s, error) {
	v, err := version.ParseSemantic(s)
	if err != nil {
		return K0s{}, fmt.Errorf("not a k0s version like v1.35.1+k0s.0 (got %q)", s)
	}
	// The pre-release is compared away on purpose: an image tag's "-k0s.0" is k0s's build
	// suffix, not a pre-release, and every release candidate of v1.35.1 already has the change.
	core := version.MajorMinor(v.Major(), v.Minor()).WithPatch(v.Patch())
	return K0s{Version: s, RenewsLeaves: core.AtLeast(k0sRenewsLeavesSince)}, nil
}

// K0sFromImage reads the k0s version from a container image reference whose repository's last
// element is "k0s" ("docker.io/k0sproject/k0s:v1.35.1-k0s.0@sha256:…"), as vcluster's k0s init
// container uses it. ok is false for any other image, and for a k0s image whose tag is no
// version (latest, a digest alone).
func K0sFromImage(image string) (k K0s, ok bool) {
	ref, _, _ := strings.Cut(image, "@")
	repo, tag := ref, ""
	if colon := strings.LastIndex(ref, ":"); colon > strings.LastIndex(ref, "/") {
		repo, tag = ref[:colon], ref[colon+1:]
	}
	if path.Base(repo) != "k0s" || tag == "" {
		return K0s{}, false
	}
	k, err := ParseK0sVersion(tag)
	if err != nil {
		return K0s{}, false
	}
	return k, true
}

// k0sResignsFiles are the files k0s ≥ v1.35.1 writes anew at every start under vcluster's CA:
// the leaves Certificates.Init requests under ca (cmd/controller/certificates.go: admin,
// konnectivity, ccm, scheduler, apiserver-kubelet-client, server, k0s-api) and the kubeconfigs
// it writes from them. front-proxy-client is not among them: its issuer is front-proxy-ca, whose
// CN is not ca.crt's. vcluster's own apiserver.crt is no k0s request.
var k0sResignsFiles = append(slices.Clone(K0sLeafFiles), "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key")

// SetK0s records what certguard knows of k0s on a report. When that k0s renews its leaves and
// can (ca.crt parses, ca.key exists), the files it re-signs at every start are judged as the pki
// dir holds them, which is what k0s serves: vcluster ≤ v0.25 never updates the Secret's copies
// of them (pkg/setup/initialize.go secretIsUpToDate compares the Secret with files it has just
// downloaded from it), so those copies age while the cluster runs fine. A copy that differs is
// marked DriftStale. An unknown k0s changes nothing.
func (r *Report) SetK0s(k K0s) {
	r.K0s = k
	if !r.k0sCanRenew() {
		return
	}
	var swapped []int
	for i, f := range r.Files {
		p := f.Path
		// Only a copy k0s re-signs at the start it is written at is stale: one it would keep
		// (another issuer) is still the next start's input.
		if !f.OnDisk || !f.InSecret || !r.RenewedByK0s(f) {
			continue
		}
		d, ok := r.disk.Files[p]
		if !ok || bytes.Equal(d, r.secret.Files[p]) && r.secret.Errors[p] == nil {
			continue
		}
		r.eff[p] = d
		r.Files[i].Source, r.Files[i].Drift = SourceDisk, DriftStale
		swapped = append(swapped, i)
	}
	// Classified after every swap: a certificate's row checks its key, and both moved together.
	for _, i := range swapped {
		f := &r.Files[i]
		f.Cert, f.Status, f.Reason, f.Detail, f.Kind = nil, "", "", "", ""
		classifyFile(f, r.eff, map[string]error{}, r.Now, r.RenewBefore)
	}
}

// k0sCanRenew: the k0s renews leaves under a foreign CA, ca.crt parses (isManagedByK0s fails the
// start otherwise) and ca.key exists (otherwise it warns "no ca.key found, not renewing").
func (r *Report) k0sCanRenew() bool {
	if !r.K0s.RenewsLeaves {
		return false
	}
	ca, ok := r.File("ca.crt")
	if !ok || ca.Cert == nil {
		return false
	}
	key, ok := r.File("ca.key")
	return ok && key.Status != StatusMissing
}

// RenewedByK0s reports whether k0s writes this file anew at the next start, whatever it holds
// now: its version renews leaves, and k0s's regenerateCert would return true for it (the
// certificate does not parse, or its issuer CN is ca.crt's). A missing file of a partial set,
// and an entry that is no readable regular file, are not: vcluster loops on a partial set, and
// k0s cannot write over a directory.
func (r *Report) RenewedByK0s(f File) bool {
	if !slices.Contains(k0sResignsFiles, f.Path) || !r.k0sCanRenew() {
		return false
	}
	if f.Format() == FormatKey {
		// k0s writes the key when it writes the certificate.
		crt, ok := r.File(strings.TrimSuffix(f.Path, ".key") + ".crt")
		return ok && f.Status != StatusMissing && f.Kind == "" && r.RenewedByK0s(crt)
	}
	switch {
	case f.Status == StatusMissing || f.Kind != "":
		return false
	case f.Status == StatusCorrupt:
		return f.Reason != ReasonNotRegular && f.Reason != ReasonTooLarge && f.Reason != ReasonUnreadable
	case f.Cert == nil:
		return false
	}
	ca, _ := r.File("ca.crt")
	return f.Cert.IssuerCN == ca.Cert.SubjectCN
}

// K0sMatters reports whether knowing the k0s version could change the judgement of this
// report: a file k0s ≥ v1.35.1 re-signs is not ok, or its certificate differs between disk and
// Secret (kubeconfigs differ after any start: k0s rewrites them). A repair asks for the version
// only then, so that a healthy start costs no request more.
func (r *Report) K0sMatters() bool {
	return slices.ContainsFunc(r.Files, func(f File) bool {
		return slices.Contains(k0sResignsFiles, f.Path) &&
			(f.Status != StatusOK || f.Drift == DriftDiffers && f.Format() != FormatKubeconfig)
	})
}

// k0sFindings says what a k0s that renews its leaves takes off certguard's hands, for a plan
// that does nothing: the files it re-signs at this start although they are not ok, and the
// Secret's stale copies.
func (r *Report) k0sFindings(secret SecretRef) []Finding {
	if !r.k0sCanRenew() {
		return nil
	}
	var renewed, stale []string
	for _, f := range r.Files {
		if f.Drift == DriftStale {
			stale = append(stale, f.Path)
		}
		if f.Status != StatusOK && r.RenewedByK0s(f) {
			renewed = append(renewed, f.Path)
		}
	}
	var out []Finding
	if len(renewed) > 0 {
		out = append(out, Finding{Code: CodeK0sRenews, Text: fmt.Sprintf("k0s %s re-signs %s at this start, as at every start: no repair needed",
			r.K0s.Version, strings.Join(renewed, ", "))})
	}
	if len(stale) > 0 {
		out = append(out, Finding{Code: CodeSecretStale, Text: fmt.Sprintf("the copies of %s in Secret %s are stale: k0s %s re-signs them at every start "+
			"and vcluster ≤ v0.25 never writes them back; the pki dir holds what k0s serves", strings.Join(stale, ", "), secret.Ref(), r.K0s.Version)})
	}
	return out
}

// setK0s asks r.K0s once, when the report needs the answer, and records it on the report.
func (r *Repair) setK0s(ctx context.Context, rep *Report) {
	if r.K0s == nil || !rep.K0sMatters() {
		return
	}
	if r.k0s == nil {
		k := r.K0s(ctx)
		r.k0s = &k
	}
	rep.SetK0s(*r.k0s)
}
