package kube

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Reason is an Event's reason. Reasons are a contract (alerts and `kubectl get events
// --field-selector reason=…` select on them), so every reason certguard records is in this one
// table, and Emit takes no other.
type Reason string

// The repair (the init container), on the vcluster pod.
const (
	ReasonRepaired Reason = "CertificatesRepaired"
	ReasonRefused  Reason = "RepairRefused"
	ReasonFailed   Reason = "RepairFailed" // an error (API, disk), not a refusal
	// ReasonNeedsAttention: something broken that certguard leaves alone (it never blocks a start).
	ReasonNeedsAttention Reason = "CertificateNeedsAttention"
)

// Expiry, k3s's reasons (pkg/certmonitor), so that alerting on them keeps working: the sidecar
// on its pod, and the repair for a CA that no restart renews.
const (
	ReasonExpiryWarning   Reason = "CertificateExpirationWarning"
	ReasonCAExpiryWarning Reason = "CACertificateExpirationWarning"
	ReasonExpirationOK    Reason = "CertificateExpirationOK"
)

// Restarts for a renewal: the sidecar's on its own pod, the fleet's on the vcluster's
// StatefulSet.
const (
	ReasonRestart Reason = "CertificateRenewalRestart"
	// ReasonRestartBlocked: a restart is due but the init container would not renew the leaves.
	ReasonRestartBlocked Reason = "CertificateRenewalRestartBlocked"
	// The fleet's alone: it follows each restart to its end.
	ReasonRestartPlanned Reason = "CertificateRenewalRestartPlanned"
	ReasonRenewed        Reason = "CertificateRenewalRenewed"
	ReasonRestartStalled Reason = "CertificateRenewalRestartNotReady"
	ReasonRenewedNothing Reason = "CertificateRenewalRestartRenewedNothing"
	ReasonRestartFailed  Reason = "CertificateRenewalRestartFailed"
)

const (
	eventSource          = "certguard"
	maxEventMessageRunes = 1024
)

// Events records Events on the vcluster pod (or, with Kind set, on another object of the
// namespace, such as the fleet's Events on a StatefulSet). It is best effort: the vcluster Role of
// v0.19–v0.25 has no events: create, so a 403 is logged once and then ignored.
type Events struct {
	Client    *Client
	Namespace string
	Pod       string // the object's name
	Log       *slog.Logger
	// Kind and APIVersion of the object; empty: a v1 Pod.
	Kind, APIVersion string
	// Instance is the reportingInstance; empty: the object's name.
	Instance string

	once sync.Once
}

// Emit records one Event. It never fails the caller.
func (e *Events) Emit(ctx context.Context, eventType string, reason Reason, message string) {
	if e == nil || e.Pod == "" {
		return
	}
	if r := []rune(message); len(r) > maxEventMessageRunes {
		message = string(r[:maxEventMessageRunes-1]) + "…"
	}
	now := time.Now().UTC().Format(time.RFC3339)
	// JSON values only (map[string]any, int64): the object is unstructured.
	kind, version, instance := cmp.Or(e.Kind, "Pod"), cmp.Or(e.APIVersion, "v1"), cmp.Or(e.Instance, e.Pod)
	ref := map[string]any{"apiVersion": version, "kind": kind, "namespace": e.Namespace, "name": e.Pod}
	err := e.Client.create(ctx, e.Namespace, eventsGVR, map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata":       map[string]any{"generateName": e.Pod + ".", "namespace": e.Namespace},
		"involvedObject": ref,
		"reason":         string(reason), "message": message, "type": eventType,
		"source":         map[string]any{"component": eventSource},
		"firstTimestamp": now, "lastTimestamp": now, "count": int64(1),
		"reportingComponent": eventSource, "reportingInstance": instance,
	})
	switch {
	case err == nil:
	case apierrors.IsForbidden(err):
		e.once.Do(func() {
			e.Log.Warn("cannot record Events (RBAC has no events: create); install the certguard add-on chart to grant it", "err", err)
		})
	default:
		e.Log.Warn("event not recorded", "reason", string(reason), "err", fmt.Sprint(err))
	}
}
