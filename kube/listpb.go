package kube

import (
	"bytes"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The LIST pages of Secrets come as Kubernetes protobuf, read here field by field with protowire
// into the same secretListJSON the JSON path fills. Protobuf carries each data value as its bytes
// where JSON carries base64 text: a page is 3/4 of the JSON's size, and the apiserver encodes it
// without base64 (measured in docs/performance.md). The typed objects of k8s.io/api/core/v1 would
// decode it too, but they bring the typed API's code into the one binary every vcluster's init
// container runs (measured there: the binary's size). Only the fields secretJSON holds are read;
// every other one is skipped by its wire type, so a field the server adds does no harm.

// protobufMedia is the content type of Kubernetes protobuf answers.
const protobufMedia = "application/vnd.kubernetes.protobuf"

// protobufMagic starts every Kubernetes protobuf answer, before its runtime.Unknown envelope.
var protobufMagic = []byte("k8s\x00")

// decodeSecretListPB decodes one LIST page. Nothing in the result points into b (the page
// buffers are reused): strings and data values are copied out.
func decodeSecretListPB(b []byte) (*secretListJSON, error) {
	if !bytes.HasPrefix(b, protobufMagic) {
		return nil, errors.New("decode Secret list: not a Kubernetes protobuf answer")
	}
	var raw []byte
	err := eachField(b[len(protobufMagic):], func(num protowire.Number, v []byte) error {
		if num == 2 { // Unknown.raw: the SecretList
			raw = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode Secret list: %w", err)
	}
	l := &secretListJSON{}
	err = eachField(raw, func(num protowire.Number, v []byte) error {
		switch num {
		case 1: // ListMeta
			return eachField(v, func(num protowire.Number, v []byte) error {
				switch num {
				case 2:
					l.Metadata.ResourceVersion = string(v)
				case 3:
					l.Metadata.Continue = string(v)
				}
				return nil
			})
		case 2: // a Secret
			l.Items = append(l.Items, secretJSON{})
			return l.Items[len(l.Items)-1].decodePB(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decode Secret list: %w", err)
	}
	// remainingItemCount is a varint, which eachField skips: read it on its own.
	if n, ok := varintField(raw, 1, 4); ok {
		l.Metadata.RemainingItemCount = &n
	}
	return l, nil
}

// decodePB fills j from one protobuf Secret.
func (j *secretJSON) decodePB(b []byte) error {
	var size int
	err := eachField(b, func(num protowire.Number, v []byte) error {
		if num == 2 {
			size += len(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// One allocation holds every data value of the Secret, copied out of the page.
	slab := make([]byte, 0, size)
	return eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			return j.decodeMetaPB(v)
		case 2:
			k, val, err := mapEntry(v)
			if err != nil {
				return err
			}
			if j.Data == nil {
				j.Data = map[string][]byte{}
			}
			start := len(slab)
			slab = append(slab, val...)
			j.Data[string(k)] = slab[start:len(slab):len(slab)]
		}
		return nil
	})
}

// decodeMetaPB fills j.Metadata from one protobuf ObjectMeta.
func (j *secretJSON) decodeMetaPB(b []byte) error {
	m := &j.Metadata
	return eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			m.Name = string(v)
		case 3:
			m.Namespace = string(v)
		case 5:
			m.UID = string(v)
		case 6:
			m.ResourceVersion = string(v)
		case 9:
			m.DeletionTimestamp = &metav1.Time{} // only its presence is read
		case 11, 12:
			k, val, err := mapEntry(v)
			if err != nil {
				return err
			}
			into := &m.Labels
			if num == 12 {
				into = &m.Annotations
			}
			if *into == nil {
				*into = map[string]string{}
			}
			(*into)[string(k)] = string(val)
		case 14:
			m.Finalizers = append(m.Finalizers, string(v))
		}
		return nil
	})
}

// eachField calls fn with every length-delimited field of the message b (strings, bytes,
// messages, map entries), in order; fields of other wire types are skipped.
func eachField(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}

// mapEntry reads a map entry's key (field 1) and value (field 2).
func mapEntry(b []byte) (k, v []byte, err error) {
	err = eachField(b, func(num protowire.Number, f []byte) error {
		switch num {
		case 1:
			k = f
		case 2:
			v = f
		}
		return nil
	})
	return k, v, err
}

// varintField is the varint field num of the message in field outer of b, if there is one.
func varintField(b []byte, outer, num protowire.Number) (int64, bool) {
	var msg []byte
	if eachField(b, func(n protowire.Number, v []byte) error {
		if n == outer {
			msg = v
		}
		return nil
	}) != nil {
		return 0, false
	}
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return 0, false
		}
		msg = msg[l:]
		if n == num && typ == protowire.VarintType {
			v, l := protowire.ConsumeVarint(msg)
			if l < 0 {
				return 0, false
			}
			return int64(v), true
		}
		l = protowire.ConsumeFieldValue(n, typ, msg)
		if l < 0 {
			return 0, false
		}
		msg = msg[l:]
	}
	return 0, false
}
