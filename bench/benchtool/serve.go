package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/certguard/certguard/kube/kubetest"
	"github.com/certguard/certguard/pki/pkigen"
	"github.com/certguard/certguard/pki/pkigen/pkigentest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Users are the identities the benchmarks run as, one per row and one more for the row's warm-up
// runs, so that the apiserver's audit log counts exactly the measured runs' requests.
var users = []string{
	"certguard", "certguard-warmup", "shell-warm", "shell-warm-warmup", "shell-cold", "shell-cold-warmup", "sanity",
}

const release = "bench"

// serve starts kube-apiserver + etcd (kube/kubetest, with its audit log), writes a healthy
// vcluster v0.25 + k0s PKI (RSA-2048 like the real one) to DIR/pki and the same files into the
// Secret bench-certs, one kubeconfig per user, and DIR/env for the shell. It keeps the apiserver
// up until SIGTERM/SIGINT or EOF on stdin, then writes DIR/requests.json: every request of each
// user, counted by the apiserver.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "work directory (required)")
	rsa := fs.Bool("rsa", true, "RSA-2048 keys like vcluster and k0s (false: ECDSA P-256)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-dir is required")
	}
	now := time.Now()
	p, err := pkigen.Generate(pkigen.Options{Now: now, Key: pkigentest.KeyFunc(*rsa)})
	if err != nil {
		return err
	}
	pkiDir := filepath.Join(*dir, "pki")
	if err := pkigen.WriteDir(pkiDir, p.Files); err != nil {
		return err
	}

	env, err := kubetest.Start()
	if err != nil {
		return err
	}
	defer env.Stop()
	ctx := context.Background()
	ns, err := env.Namespace(ctx, "bench")
	if err != nil {
		return err
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: release + "-certs", Namespace: ns}, Data: p.SecretData()}
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return err
	}
	vars := map[string]string{"NS": ns, "RELEASE": release, "SECRET": sec.Name, "PKI": pkiDir}
	for _, u := range users {
		kc, err := env.Kubeconfig(*dir, u, "system:masters")
		if err != nil {
			return err
		}
		vars["KC_"+strings.ToUpper(strings.ReplaceAll(u, "-", "_"))] = kc
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		fmt.Fprintf(&b, "%s=%q\n", k, vars[k])
	}
	if err := os.WriteFile(filepath.Join(*dir, "env"), []byte(b.String()), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchtool serve: apiserver up, Secret %s/%s with %d keys, %d files in %s\n",
		ns, sec.Name, len(sec.Data), len(p.Files), pkiDir)

	// Wait for the shell to be done with us.
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-done:
	case <-sig:
	}
	return writeRequests(env, filepath.Join(*dir, "requests.json"))
}

// userRequests is what the audit log says one user did.
type userRequests struct {
	Total int            `json:"total"`
	ByReq map[string]int `json:"byRequest"` // "get /api/v1/namespaces/x/secrets/y" → count
}

func writeRequests(env *kubetest.Env, path string) error {
	out := map[string]userRequests{}
	for _, u := range users {
		evs, err := env.Requests(u)
		if err != nil {
			return err
		}
		ur := userRequests{ByReq: map[string]int{}}
		for _, e := range evs {
			ur.Total++
			uri, _, _ := strings.Cut(e.RequestURI, "?")
			ur.ByReq[fmt.Sprintf("%s %s %d", e.Verb, uri, e.ResponseStatus.Code)]++
		}
		out[u] = ur
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
