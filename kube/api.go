package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// meta is the part of an object's metadata certguard reads or writes.
type meta struct {
	Name            string            `json:"name,omitempty"`
	GenerateName    string            `json:"generateName,omitempty"`
	Namespace       string            `json:"namespace,omitempty"`
	UID             string            `json:"uid,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	Finalizers      []string          `json:"finalizers,omitempty"`
	// DeletionTimestamp is set once a delete was accepted while finalizers keep the object.
	DeletionTimestamp string `json:"deletionTimestamp,omitempty"`
}

// secret is a Secret as certguard reads it, with the server's JSON kept for writing back.
type secret struct {
	Metadata meta              `json:"metadata"`
	Type     string            `json:"type,omitempty"`
	Data     map[string][]byte `json:"data,omitempty"`
	raw      []byte
}

func decodeSecret(raw []byte) (*secret, error) {
	s := &secret{raw: raw}
	if err := json.Unmarshal(raw, s); err != nil {
		return nil, fmt.Errorf("decode Secret: %w", err)
	}
	return s, nil
}

// edited returns the server's JSON of s with keys removed from data and annotations set; every
// other field stays as the server sent it.
func (s *secret) edited(remove []string, annotations map[string]string) ([]byte, error) {
	var obj map[string]any
	d := json.NewDecoder(bytes.NewReader(s.raw))
	d.UseNumber() // numbers round-trip exactly
	if err := d.Decode(&obj); err != nil {
		return nil, err
	}
	if data, ok := obj["data"].(map[string]any); ok {
		for _, k := range remove {
			delete(data, k)
		}
	}
	md, ok := obj["metadata"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("secret %s has no metadata", s.Metadata.Name)
	}
	if len(annotations) > 0 {
		ann, _ := md["annotations"].(map[string]any)
		if ann == nil {
			ann = map[string]any{}
			md["annotations"] = ann
		}
		for k, v := range annotations {
			ann[k] = v
		}
	}
	return json.Marshal(obj)
}

func (c *Client) getSecret(ctx context.Context, ns, name string) (*secret, error) {
	raw, err := c.rc.Get().Namespace(ns).Resource("secrets").Name(name).Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	return decodeSecret(raw)
}

// updateSecret writes body back; the resourceVersion in it makes a concurrent change a Conflict.
// With dryRun the server runs every check (RBAC, admission, immutability, the precondition) and
// stores nothing.
func (c *Client) updateSecret(ctx context.Context, ns, name string, body []byte, dryRun bool) (*secret, error) {
	req := c.rc.Put().Namespace(ns).Resource("secrets").Name(name).Body(body)
	if dryRun {
		req = req.Param("dryRun", metav1.DryRunAll)
	}
	raw, err := req.Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	return decodeSecret(raw)
}

func (c *Client) delete(ctx context.Context, ns, resource, name string, pre *metav1.Preconditions, dryRun bool) error {
	opts := metav1.DeleteOptions{TypeMeta: metav1.TypeMeta{Kind: "DeleteOptions", APIVersion: "v1"}, Preconditions: pre}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	body, err := json.Marshal(opts)
	if err != nil {
		return err
	}
	return c.rc.Delete().Namespace(ns).Resource(resource).Name(name).Body(body).Do(ctx).Error()
}

func (c *Client) create(ctx context.Context, ns, resource string, obj any) error {
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	return c.rc.Post().Namespace(ns).Resource(resource).Body(body).Do(ctx).Error()
}

func (c *Client) getMeta(ctx context.Context, ns, resource, name string) (*meta, error) {
	raw, err := c.rc.Get().Namespace(ns).Resource(resource).Name(name).Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var obj struct {
		Metadata meta `json:"metadata"`
	}
	return &obj.Metadata, json.Unmarshal(raw, &obj)
}

// secretList is one page of a LIST.
type secretList struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
		Continue        string `json:"continue"`
	} `json:"metadata"`
	Items []secret `json:"items"`
}

func (c *Client) listSecrets(ctx context.Context, ns, fieldSelector string, limit int64, cont string) (*secretList, error) {
	req := c.rc.Get().Resource("secrets").Param("fieldSelector", fieldSelector)
	if ns != "" {
		req = req.Namespace(ns)
	}
	if limit > 0 {
		req = req.Param("limit", strconv.FormatInt(limit, 10))
	}
	if cont != "" {
		req = req.Param("continue", cont)
	}
	raw, err := req.Do(ctx).Raw()
	if err != nil {
		return nil, err
	}
	var l secretList
	if err := json.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("decode Secret list: %w", err)
	}
	return &l, nil
}

// watchEvent is one line of a watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// watchSecrets opens a watch stream; the caller decodes it with next.
func (c *Client) watchSecrets(ctx context.Context, ns, fieldSelector, rv string) (io.ReadCloser, error) {
	// The server ends the stream after timeoutSeconds; the caller watches again from the last
	// version it saw.
	wc, err := c.watchClient()
	if err != nil {
		return nil, err
	}
	return wc.Get().Namespace(ns).Resource("secrets").
		Param("watch", "true").Param("fieldSelector", fieldSelector).Param("resourceVersion", rv).
		Param("allowWatchBookmarks", "true").Param("timeoutSeconds", "600").Stream(ctx)
}
