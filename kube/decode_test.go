package kube

import (
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestOneDecoderTwoEntries: a Secret's JSON read by encoding/json (a GET, a LIST page) and the
// same object read from the dynamic client's maps (a WATCH event, an Update's answer) give the
// same pki.Secret: data values base64-decoded, a deletion timestamp read as Deleting.
func TestOneDecoderTwoEntries(t *testing.T) {
	raw := []byte(`{"apiVersion":"v1","kind":"Secret","type":"Opaque",
		"metadata":{"name":"vc-certs","namespace":"ns","uid":"u1","resourceVersion":"7","labels":{"app":"vcluster"},
			"annotations":{"a":"b"},"finalizers":["f"],"deletionTimestamp":"2026-12-05T10:00:00Z",
			"managedFields":[{"manager":"kubectl"}]},
		"data":{"ca.crt":"Y2E=","empty":""}}`)
	fromJSON, err := decodeSecret(raw)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(raw); err != nil {
		t.Fatal(err)
	}
	fromMaps, err := secretFrom(u)
	if err != nil {
		t.Fatal(err)
	}
	a, b := toPKI(fromJSON), toPKI(fromMaps)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("encoding/json: %+v\nconverter: %+v", a, b)
	}
	if string(a.Data["ca.crt"]) != "ca" || a.Data["empty"] == nil || len(a.Data["empty"]) != 0 || !a.Deleting || a.Finalizers[0] != "f" {
		t.Fatalf("decoded %+v", a)
	}
	bad := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x"}, "data": map[string]any{"k": "%%%"}}}
	if _, err := secretFrom(bad); err == nil {
		t.Fatal("a data value that is not base64 decoded without error")
	}
}
