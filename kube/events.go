package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Event reasons. The expiry ones are k3s's, so existing alerting on them keeps working.
const (
	ReasonRepaired        = "CertificatesRepaired"
	ReasonRefused         = "RepairRefused"
	ReasonExpiryWarning   = "CertificateExpirationWarning"
	ReasonCAExpiryWarning = "CACertificateExpirationWarning"
	ReasonExpirationOK    = "CertificateExpirationOK"
	eventSource           = "certguard"
	maxEventMessageRunes  = 1024
)

// Events records Events on the vcluster pod. It is best effort: the vcluster Role of v0.19–v0.25
// has no events: create, so a 403 is logged once and then ignored.
type Events struct {
	Client    *Client
	Namespace string
	Pod       string
	Log       *slog.Logger

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
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: e.Pod + ".", Namespace: e.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "v1", Kind: "Pod", Namespace: e.Namespace, Name: e.Pod,
		},
		Reason: reason, Message: message, Type: eventType,
		Source:         corev1.EventSource{Component: eventSource},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: eventSource, ReportingInstance: e.Pod,
	}
	err := e.Client.createEvent(ctx, ev)
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
