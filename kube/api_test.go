package kube_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certguard/certguard/kube"
	"github.com/certguard/certguard/pki"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// expireSecondPage answers the first LIST that carries a continue token with what the apiserver
// says when the token's revision was compacted away (410, reason Expired; the message is
// apiserver's storage error for it), and passes everything else through. etcd compaction cannot
// be triggered through the apiserver, so this stands in for it on the wire.
type expireSecondPage struct {
	rt       http.RoundTripper
	mu       sync.Mutex
	expired  int
	requests []string // "list" or "list continue" or "list 410", in order
}

func (e *expireSecondPage) RoundTrip(r *http.Request) (*http.Response, error) {
	cont := r.URL.Query().Get("continue")
	e.mu.Lock()
	expire := r.Method == http.MethodGet && cont != "" && e.expired == 0
	switch {
	case expire:
		e.expired++
		e.requests = append(e.requests, "list 410")
	case cont != "":
		e.requests = append(e.requests, "list continue")
	default:
		e.requests = append(e.requests, "list")
	}
	e.mu.Unlock()
	if !expire {
		return e.rt.RoundTrip(r)
	}
	body := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",` +
		`"message":"The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",` +
		`"reason":"Expired","code":410}`
	return &http.Response{StatusCode: http.StatusGone, Status: "410 Gone", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": []string{"application/json"}}, Body: io.NopCloser(bytes.NewBufferString(body)),
		ContentLength: int64(len(body)), Request: r}, nil
}

// TestPagerRelistsWhenTheContinueTokenExpires: 7 vcluster certificate Secrets (and 3 others)
// listed 3 a page; the continue token of the second page has expired. The listing starts over
// and every certificate Secret reaches fn exactly once. Before, the 410 ended the fleet view.
func TestPagerRelistsWhenTheContinueTokenExpires(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	var want []string
	for i := range 10 {
		name := fmt.Sprintf("vc%d-certs", i)
		labels := map[string]string{"app": "vcluster"}
		if i >= 7 {
			name, labels = fmt.Sprintf("other%d", i), nil
		} else {
			want = append(want, name)
		}
		if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Data: map[string][]byte{"ca.crt": []byte("x")}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	proxy := &expireSecondPage{}
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { proxy.rt = rt; return proxy })
	c, err := kube.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	requests, err := kube.EachCertSecret(ctx, c, ns, 3, func(s *pki.Secret) { got = append(got, s.Name) })
	if err != nil {
		t.Fatalf("EachCertSecret with an expired continue token: %v", err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("Secrets seen %v, want each of %v once", got, want)
	}
	// Page 1, page 2 refused (410), then the 10 Secrets again from the start: 4 pages of 3.
	wantReqs := "list,list 410,list,list continue,list continue,list continue"
	if strings.Join(proxy.requests, ",") != wantReqs || requests != 6 {
		t.Fatalf("requests %v (counted %d), want %s", proxy.requests, requests, wantReqs)
	}
}

// TestErrorsSayWhatTheServerSaid: an error line names what the server answered, not
// "unknown (put secrets vc-certs)" or "the server rejected our request": the user and verb
// RBAC refused, or that the Secret is immutable; and what to do.
func TestErrorsSayWhatTheServerSaid(t *testing.T) {
	ctx := context.Background()
	t.Run("immutable", func(t *testing.T) {
		ns := namespace(t)
		yes := true
		if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vc-certs"},
			Immutable: &yes, Data: map[string][]byte{"server.crt": []byte("x"), "ca.crt": []byte("ca")}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		c, _ := user(t, ns, all, false)
		store := &kube.SecretStore{Client: c, Namespace: ns, Name: "vc-certs"}
		for _, dryRun := range []bool{true, false} {
			s, err := store.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = store.RemoveKeys(ctx, s, []string{"server.crt"}, dryRun)
			if err == nil || !strings.Contains(err.Error(), "is immutable") || !strings.Contains(err.Error(), "field is immutable") ||
				!strings.Contains(err.Error(), "recreate it without immutable") || !strings.Contains(err.Error(), ns+"/vc-certs") {
				t.Fatalf("RemoveKeys (dry run %v) on an immutable Secret = %v", dryRun, err)
			}
			t.Logf("dry run %v: %v", dryRun, err)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		ns := namespace(t)
		createSecret(t, ns, map[string][]byte{"server.crt": []byte("x")})
		c, name := user(t, ns, []string{"get"}, false)
		store := &kube.SecretStore{Client: c, Namespace: ns, Name: "vc-certs"}
		s, err := store.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = store.RemoveKeys(ctx, s, []string{"server.crt"}, false)
		for _, want := range []string{`User "` + name + `"`, `cannot update resource "secrets"`, `in the namespace "` + ns + `"`, `grant RBAC "update"`} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("RemoveKeys without update = %v; want it to say %s", err, want)
			}
		}
		t.Log(err)
	})
}

// TestWatchWithoutWatchRightSaysSo: a user that may list but not watch the Secret gets the Secret
// from the LIST, then an error that names the refused verb and the user (RetryWatcher retries
// most watch errors silently; a 403 it hands back, and Watch reports it).
func TestWatchWithoutWatchRightSaysSo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := namespace(t)
	createSecret(t, ns, map[string][]byte{"v": []byte("1")})
	c, name := user(t, ns, []string{"get", "list"}, false)
	seen := make(chan string, 20)
	go (&kube.SecretStore{Client: c, Namespace: ns, Name: "vc-certs"}).Watch(ctx, func(s *pki.Secret) {
		seen <- "secret " + string(s.Data["v"])
	}, func(err error) { seen <- "error: " + err.Error() })
	for _, want := range []string{"secret 1", "error: watch Secret " + ns + "/vc-certs: forbidden"} {
		select {
		case got := <-seen:
			if !strings.HasPrefix(got, want) {
				t.Fatalf("saw %q, want %q…", got, want)
			}
			if strings.HasPrefix(got, "error") && (!strings.Contains(got, `User "`+name+`"`) || !strings.Contains(got, `cannot watch resource "secrets"`)) {
				t.Fatalf("the error does not name the user and the verb: %s", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing seen, want %q", want)
		}
	}
}

// TestListRefusedReadsAsTheServerWroteIt: the LIST pages ask for protobuf, in which the apiserver
// also writes its errors, and client-go decodes JSON errors only. RBAC's refusal must still read
// as the server wrote it (the verb, the resource, its reason), as it did when the pages were JSON.
func TestListRefusedReadsAsTheServerWroteIt(t *testing.T) {
	cfg, err := env.User("nobody-lists")
	if err != nil {
		t.Fatal(err)
	}
	c, err := kube.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kube.EachCertSecret(context.Background(), c, namespace(t), 100, func(*pki.Secret) { t.Error("a Secret listed without the grant") })
	if !kube.IsForbidden(err) || !strings.Contains(err.Error(), `User "nobody-lists" cannot list resource "secrets"`) {
		t.Fatalf("got %v", err)
	}
}
