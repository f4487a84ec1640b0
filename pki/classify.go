package pki

import (
	"fmt"
	"slices"
	"time"
)

// findings is what classify saw in a Report: each finding with its Code, grouped by what decide
// does with it. It decides nothing.
type findings struct {
	// settled is a finding that leaves nothing to judge (first-start, no-cluster-ca,
	// k0s-own-pki): the plan says it alone and does nothing.
	settled *Finding
	// warnings are said whatever is decided, in the order they were found (ca-due last).
	warnings []Finding
	leaf     []Finding // k0s leaves due, expired or unusable: what a leaf repair removes
	caDead   []Finding // CAs expired, unusable or half missing: the cluster cannot boot on them
	caDue    []Finding // CAs due (also in warnings): only --strategy full renews them
	kept     []Finding // unusable files a leaf repair keeps
	skew     []Finding // certificates from the future
}

// say appends a finding of code c to list.
func say(list *[]Finding, c Code, path, format string, a ...any) {
	*list = append(*list, Finding{Code: c, Path: path, Text: fmt.Sprintf(format, a...)})
}

// classify turns a Report into findings. It is pure: the Policy gives only the Secret's name,
// for the texts.
func classify(r *Report, pol Policy) findings {
	var f findings
	settle := func(c Code, format string, a ...any) findings {
		f.settled = &Finding{Code: c, Text: fmt.Sprintf(format, a...)}
		return f
	}
	if !r.SecretPresent && r.DiskEmpty() {
		return settle(CodeFirstStart, "no Secret and no PKI on the volume (first start): vcluster generates them")
	}
	if _, crt := r.File("ca.crt"); !crt {
		if _, key := r.File("ca.key"); !key {
			return settle(CodeNoClusterCA, "neither ca.crt nor ca.key exists on the volume or in the Secret: vcluster generates a new PKI at this start")
		}
	}
	if ca, ok := r.File("ca.crt"); ok && ca.Cert != nil && ca.Cert.SubjectCN == k0sOwnCACN {
		return settle(CodeK0sOwnPKI, "ca.crt has CN %s: k0s runs its own PKI and re-issues its leaves at every start (vcluster < v0.19); nothing to do", k0sOwnCACN)
	}
	if r.SecretPresent && r.DiskEmpty() {
		say(&f.warnings, CodeSecretOnly, "", "the pki dir holds no files (a new or non-persistent volume): judged from Secret %s alone, which vcluster writes to the volume at this start", pol.Secret.Ref())
	}
	for _, file := range r.Files {
		f.file(r, pol, file)
	}
	for _, name := range caEntries[1:] {
		_, crt := r.File(name + ".crt")
		_, key := r.File(name + ".key")
		if !crt && !key {
			say(&f.warnings, CodeCAAbsent, name+".crt", "%s.crt and %s.key are both missing: k0s generates a new %s on boot", name, name, name)
		}
	}
	f.warnings = append(f.warnings, f.caDue...)
	return f
}

// file classifies one file of the Report by its role.
func (f *findings) file(r *Report, pol Policy, file File) {
	if file.Role == RoleUnknown {
		return
	}
	if r.RenewedByK0s(file) {
		// k0s ≥ v1.35.1 writes it anew at this start, whatever it holds (pki/k0s.go).
		return
	}
	if file.Status == StatusNotYetValid {
		say(&f.skew, CodeNotYetValid, file.Path, "%s is not valid before %s", file.Path, file.Cert.NotBefore.UTC().Format(time.RFC3339))
	}
	switch {
	case slices.Contains(K0sLeafFiles, file.Path):
		if file.Status != StatusOK {
			say(&f.leaf, CodeLeaf, file.Path, "%s", describe(file, r.Now))
		}
	case file.Role == RoleCA:
		switch {
		case file.Status == StatusDue:
			say(&f.caDue, CodeCADue, file.Path, "%s: a CA is not renewed by any restart; plan a CA rotation (--strategy full) before it expires", describe(file, r.Now))
		case file.Status == StatusCorrupt && (file.Reason == ReasonNotRegular || file.Reason == ReasonTooLarge || file.Reason == ReasonUnreadable):
			// Bytes that could not be read are no evidence that the CA is bad.
			say(&f.warnings, CodeCAUnjudged, file.Path, "%s: a CA file that cannot be read is never a reason to reset; fix it by hand", describe(file, r.Now))
		case file.Status != StatusOK && file.Source == SourceSecret && caGoodOnDisk(r, file.Path):
			// The Secret's copy is broken but the volume holds a good CA: that is drift to
			// fix, never a reason to throw the good CA away.
			say(&f.warnings, CodeCADrift, file.Path, "%s in Secret %s, while the pki dir holds a good CA: never a reason to reset; "+
				"restore the Secret's %s from the pki dir (or a backup)", describe(file, r.Now), pol.Secret.Ref(), SecretKey(file.Path))
		case file.Status != StatusOK:
			say(&f.caDead, CodeCADead, file.Path, "%s", describe(file, r.Now))
		}
	case file.Role == RoleVclusterLeaf || file.Role == RoleKeyPair:
		switch file.Status {
		case StatusOK:
		case StatusDue:
			say(&f.warnings, CodeKeptDue, file.Path, "%s: k0s does not renew vcluster's own leaves; only --strategy full does", describe(file, r.Now))
		default:
			say(&f.kept, CodeKeptBroken, file.Path, "%s", describe(file, r.Now))
		}
	}
}

// caGoodOnDisk reports whether the CA that p belongs to is whole and valid in the pki dir alone.
func caGoodOnDisk(r *Report, p string) bool {
	if !r.disk.Present {
		return false
	}
	e, _ := roleOf(p)
	disk := Inspect(r.disk, Store{Source: SourceSecret}, r.Now, r.RenewBefore)
	for _, ext := range e.files {
		f, ok := disk.File(e.name + ext)
		if !ok || (f.Status != StatusOK && f.Status != StatusDue) {
			return false
		}
	}
	return true
}

// describe says in one phrase what is wrong with a file.
func describe(f File, now time.Time) string {
	switch f.Status {
	case StatusExpired:
		return fmt.Sprintf("%s expired at %s", f.Path, f.Cert.NotAfter.UTC().Format(time.RFC3339))
	case StatusDue:
		return fmt.Sprintf("%s expires within %s at %s", f.Path, Residual(f.Cert.NotAfter.Sub(now)), f.Cert.NotAfter.UTC().Format(time.RFC3339))
	case StatusNotYetValid:
		return fmt.Sprintf("%s is not valid before %s", f.Path, f.Cert.NotBefore.UTC().Format(time.RFC3339))
	case StatusMissing:
		return f.Path + " is missing (" + f.Detail + ")"
	}
	return f.Path + " is " + string(f.Status) + ": " + f.Detail
}
