package pki

// RewrittenAtBoot reports whether k0s writes this file anew at the next start, whatever it holds
// now, so that its expiry is not a repair's concern: the etcd-ca leaves and etcd/jwt (re-issued at
// every start), the kubeconfigs k0s writes from its leaves (admin.conf, scheduler.conf, ccm.conf,
// konnectivity.conf, rewritten at every start; research notes §4), and the k0s leaves themselves
// when they are gone from disk and Secret (a leaf repair's work) or when this k0s re-signs them at
// every start (k0s ≥ v1.35.1). `check` says so beside an EXPIRED row that is no failed repair.
func (r *Report) RewrittenAtBoot(f File) bool {
	switch f.Role {
	case RoleK0sRenewed:
		return true
	case RoleKubeconfig:
		return f.Path == "admin.conf" || f.Path == "scheduler.conf"
	case RoleK0sLeaf:
		return f.Format() == FormatKubeconfig || r.K0s.RenewsLeaves || (!f.OnDisk && !f.InSecret)
	}
	return false
}
