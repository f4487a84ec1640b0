// Command timeit times commands for bench/run.sh and prints its tables. It imports the standard
// library only, on purpose: Linux charges a child's peak RSS (ru_maxrss) with the parent's at
// the fork, so a timer that links client-go (~30 MiB resident) would report 30 MiB for every
// command it runs. This one stays at a few MiB, below anything it measures (bench/run.sh prints
// /bin/true's figure as the floor).
//
//	timeit time   -label L -n N [-warmup W] [-user U] [-fresh-env VAR] -out FILE -- CMD...
//	timeit report -results FILE [-requests FILE] [-baseline LABEL]
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: timeit time|report [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "time":
		err = timeCmd(os.Args[2:])
	case "report":
		err = report(os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "timeit "+os.Args[1]+":", err)
		os.Exit(1)
	}
}
