package kube_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/certguard/certguard/kube/kubetest"
)

var env *kubetest.Env

func TestMain(m *testing.M) {
	var err error
	env, err = kubetest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func TestEnvSmoke(t *testing.T) {
	ns, err := env.Namespace(context.Background(), "smoke")
	if err != nil {
		t.Fatal(err)
	}
	t.Log(ns)
}
