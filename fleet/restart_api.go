package fleet

import (
	"context"
	"log/slog"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
)

// RestartAPI is everything the restarter does on the cluster. KubeRestartAPI is the real one;
// every call is made with the time the restarter was handed, so a test can drive a year of
// restarts against a real API server with a clock of its own.
type RestartAPI interface {
	// Hold takes or renews the Lease; false: another replica restarts, this one waits.
	Hold(ctx context.Context) (bool, error)
	// Secret reads a certificate Secret fresh from the server (nil: gone).
	Secret(ctx context.Context, namespace, name string) (*pki.Secret, error)
	// Pod reads a pod's UID, phase and readiness (nil: no such pod).
	Pod(ctx context.Context, namespace, name string) (*kube.PodState, error)
	// Record sets annotations on the certificate Secret ("" removes one).
	Record(ctx context.Context, namespace, secret string, annotations map[string]string) error
	// DeletePod deletes the pod with this UID.
	DeletePod(ctx context.Context, namespace, name, uid string) error
	// Event records an Event on the vcluster's StatefulSet.
	Event(ctx context.Context, namespace, statefulSet, eventType string, reason kube.Reason, message string)
}

// KubeRestartAPI is RestartAPI on the API server.
type KubeRestartAPI struct {
	Client *kube.Client
	Lease  *kube.Lease
	Log    *slog.Logger
	// Instance names this replica in Events (reportingInstance).
	Instance string
}

func (k *KubeRestartAPI) Hold(ctx context.Context) (bool, error) { return k.Lease.Hold(ctx) }

func (k *KubeRestartAPI) Secret(ctx context.Context, namespace, name string) (*pki.Secret, error) {
	return (&kube.SecretStore{Client: k.Client, Namespace: namespace, Name: name}).Get(ctx)
}

func (k *KubeRestartAPI) Pod(ctx context.Context, namespace, name string) (*kube.PodState, error) {
	return kube.GetPod(ctx, k.Client, namespace, name)
}

func (k *KubeRestartAPI) Record(ctx context.Context, namespace, secret string, annotations map[string]string) error {
	return (&kube.SecretStore{Client: k.Client, Namespace: namespace, Name: secret}).Annotate(ctx, annotations)
}

func (k *KubeRestartAPI) DeletePod(ctx context.Context, namespace, name, uid string) error {
	return kube.DeletePod(ctx, k.Client, namespace, name, uid)
}

func (k *KubeRestartAPI) Event(ctx context.Context, namespace, statefulSet, eventType string, reason kube.Reason, message string) {
	e := &kube.Events{Client: k.Client, Namespace: namespace, Pod: statefulSet, Kind: "StatefulSet", APIVersion: "apps/v1", Instance: k.Instance, Log: k.Log}
	e.Emit(ctx, eventType, reason, message)
}
