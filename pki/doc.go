// Package pki reads, classifies and repairs the control-plane PKI that vcluster (v0.19–v0.25)
// and k0s keep in /data/k0s/pki and in the Secret <release>-certs.
//
// The package is split the way the repair runs:
//
//   - read: ReadDir (the volume) and FromSecret (the Secret's data) yield a Store each;
//   - classify: Inspect overlays the two stores the way vcluster does at pod start (the Secret
//     wins) and classifies every certificate against one reference time;
//   - plan: BuildPlan turns that Report into a Plan, plain data, so a dry run costs nothing;
//   - apply: an Executor backs up, then applies the Plan to the disk and, through the
//     SecretAPI interface, to the Secret, journaled so that a killed run is finished by the next.
//
// Nothing here imports Kubernetes client code: package kube implements SecretAPI.
package pki
