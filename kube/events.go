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

// Event reasons. The expiry ones are k3s's, so existing alerting on them keeps working.
const (
	ReasonRepaired = "CertificatesRepaired"
	ReasonRefused  = "RepairRefused"
	ReasonFailed   = "RepairFailed" // an error (API, disk), not a refusal
	// ReasonNeedsAttention: something broken that certguard leaves alone (it never blocks a start).
	ReasonNeedsAttention  = "CertificateNeedsAttention"
	ReasonExpiryWarning   = "CertificateExpirationWarning"
	ReasonCAExpiryWarning = "CACertificateExpirationWarning"
	ReasonExpirationOK    = "CertificateExpirationOK"
	eventSource           = "certguard"
	maxEventMessageRunes  = 1024
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
func (e *Events) Emit(ctx context.Context, eventType, reason, message string) {
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
		"reason":         reason, "message": message, "type": eventType,
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
		e.Log.Warn("event not recorded", "reason", reason, "err", fmt.Sprint(err))
	}
}
