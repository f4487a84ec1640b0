package kube

import (
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func BenchmarkListPage(b *testing.B) {
	list := &corev1.SecretList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "SecretList"}}
	for i := range 100 {
		d := map[string][]byte{}
		for k := range 43 {
			d[fmt.Sprintf("key-%d.crt", k)] = make([]byte, 1900)
		}
		list.Items = append(list.Items, corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("vc%d-certs", i), Namespace: "ns", UID: "u", ResourceVersion: "1",
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m", Operation: "Update", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:data":{}}`)}}}}, Data: d})
	}
	raw, _ := list.Marshal()
	env, _ := (&runtime.Unknown{Raw: raw}).Marshal()
	pb := append([]byte("k8s\x00"), env...)
	js, _ := json.Marshal(list)
	b.Run("protobuf", func(b *testing.B) {
		b.SetBytes(int64(len(pb)))
		for b.Loop() {
			if _, err := decodeSecretListPB(pb); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.SetBytes(int64(len(js)))
		for b.Loop() {
			var l secretListJSON
			if err := json.Unmarshal(js, &l); err != nil {
				b.Fatal(err)
			}
		}
	})
}
