package kube

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestListPageProtobufAsJSON: a LIST page decoded from protobuf (decodeSecretListPB, field by
// field) is the page decoded from JSON (encoding/json), both encoded here by k8s.io/api's own
// typed objects: metadata, continue token, remaining count, data (empty values included), a
// deletion timestamp; fields certguard does not read (managedFields, owner references, type,
// stringData) are skipped.
func TestListPageProtobufAsJSON(t *testing.T) {
	now := metav1.Now()
	remaining := int64(7)
	list := &corev1.SecretList{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "SecretList"},
		ListMeta: metav1.ListMeta{ResourceVersion: "42", Continue: "tok", RemainingItemCount: &remaining},
		Items: []corev1.Secret{
			{ObjectMeta: metav1.ObjectMeta{Name: "vc-certs", Namespace: "ns", UID: "u1", ResourceVersion: "7",
				Labels: map[string]string{"app": "vcluster"}, Annotations: map[string]string{"a": "b", "c": ""},
				Finalizers: []string{"f", "g"}, DeletionTimestamp: &now, Generation: 3,
				OwnerReferences: []metav1.OwnerReference{{Name: "o", UID: "u0"}},
				ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
				Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"ca.crt": []byte("ca"), "empty": {}, "k": []byte("v")},
				StringData: map[string]string{"s": "t"}},
			{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "ns", UID: "u2", ResourceVersion: "8"}},
		},
	}
	raw, err := list.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	env, err := (&runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: "v1", Kind: "SecretList"}, Raw: raw}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	page := append([]byte("k8s\x00"), env...)
	fromPB, err := decodeSecretListPB(page)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON secretListJSON
	if err := json.Unmarshal(js, &fromJSON); err != nil {
		t.Fatal(err)
	}
	// Only the presence of a deletion timestamp is read.
	if fromPB.Items[0].Metadata.DeletionTimestamp == nil {
		t.Fatal("protobuf: the deletion timestamp was not seen")
	}
	fromPB.Items[0].Metadata.DeletionTimestamp = fromJSON.Items[0].Metadata.DeletionTimestamp
	if !reflect.DeepEqual(fromPB, &fromJSON) {
		t.Fatalf("protobuf: %+v\nJSON:     %+v", fromPB, &fromJSON)
	}
	truncated := slices.Clone(page[:len(page)-3])
	// Nothing points into the page: the reader reuses its buffer.
	clear(page)
	if string(fromPB.Items[0].Data["ca.crt"]) != "ca" || fromPB.Items[0].Metadata.Name != "vc-certs" {
		t.Fatalf("the decoded page changed with its buffer: %+v", fromPB.Items[0])
	}
	if _, err := decodeSecretListPB([]byte(`{"items":[]}`)); err == nil {
		t.Fatal("JSON decoded as protobuf")
	}
	if _, err := decodeSecretListPB(truncated); err == nil {
		t.Fatal("a truncated page decoded without error")
	}
}
