// Command benchtool is the setup half of bench/run.sh: it starts the real kube-apiserver + etcd
// with a vcluster-style PKI and its Secret, and lays out large pki trees. bench/timeit does the
// timing, in a process of its own: see there. It is a benchmark harness, not part of certguard.
//
//	benchtool serve -dir DIR      apiserver + PKI + Secret until SIGTERM or EOF on stdin
//	benchtool tree  -from PKI -certs N -out DIR
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool serve|tree [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "tree":
		err = tree(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool "+os.Args[1]+":", err)
		os.Exit(1)
	}
}
