// Command certguard keeps vcluster's k0s control plane alive when its certificates expire.
//
// One file per command, each with its own settings struct and flag set: repair.go (the init
// container), check.go, watch.go (the sidecar), fleet.go, fleet_plan.go, fleet_serve.go, demo.go
// and version.go. settings.go holds what several share; this file only dispatches and ends.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/caarlos0/env/v11"
	_ "time/tzdata" // --restart-timezone works in a scratch image
)

const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitRefused = 3
	exitDue     = 4
)

// commandNames are the commands, in the order the usage and docs/flags.md list them.
var commandNames = []string{"repair", "check", "watch", "fleet", "fleet plan", "fleet serve", "demo", "version"}

// newCommand returns a command's settings at their zero value, or nil for an unknown name.
func newCommand(name string) command {
	switch name {
	case "repair":
		return &repairCmd{}
	case "check":
		return &checkCmd{}
	case "watch":
		return &watchCmd{}
	case "fleet":
		return &fleetCmd{}
	case "fleet plan":
		return &fleetPlanCmd{}
	case "fleet serve":
		return &fleetServeCmd{}
	case "demo":
		return &demoCmd{}
	case "version":
		return &versionCmd{}
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a wrong flag or value: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Ending is what is read before any command: where the pod's termination message goes.
type Ending struct {
	// TerminationLog follows the container's terminationMessagePath when that is not the default.
	TerminationLog string `env:"TERMINATION_LOG" envDefault:"/dev/termination-log"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(stdout, usage, flagHelp())
		return exitOK
	}
	name := args[0]
	// fleet's two subcommands are commands of their own, with their own flags.
	if name == "fleet" && len(args) > 1 && (args[1] == "serve" || args[1] == "plan") {
		name, args = "fleet "+args[1], args[1:]
	}
	var e Ending
	if err := env.ParseWithOptions(&e, env.Options{Prefix: "CERTGUARD_"}); err != nil {
		return fail(stderr, usageError{"environment: " + firstLine(err.Error())})
	}
	terminationLog = e.TerminationLog
	c := newCommand(name)
	if c == nil {
		return fail(stderr, usageError{fmt.Sprintf("unknown command %q: want repair, check, watch, fleet, demo or version (see certguard --help)", name)})
	}
	if err := parseSettings(name, c, args[1:], nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			if name == "version" {
				fmt.Fprintln(stdout, "usage: certguard version [-o text|json]")
			} else {
				fmt.Fprintf(stdout, usage, flagHelp())
			}
			return exitOK
		}
		return fail(stderr, err)
	}
	o := streams{stdout: stdout, stderr: stderr}
	if l, ok := c.(interface{ logs() *Logging }); ok {
		o.log = l.logs().logger(stderr)
	}
	return c.run(ctx, o)
}

// writeLine prints one line, also as the pod's termination message so that `kubectl describe
// pod` shows it.
func writeLine(stderr io.Writer, line string) {
	line = strings.ReplaceAll(line, "\n", " ")
	fmt.Fprintln(stderr, line)
	if f, ferr := os.OpenFile(terminationLog, os.O_WRONLY|os.O_TRUNC, 0); ferr == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

// terminationLog is where Kubernetes reads a container's last words (a variable for tests).
var terminationLog = "/dev/termination-log"

// fail prints the one line that says what is wrong, also as the pod's termination message so
// that `kubectl describe pod` shows it, and returns the exit code.
func fail(stderr io.Writer, err error) int {
	writeLine(stderr, "certguard: "+err.Error())
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

// refuse says why a needed repair was not done, on stderr and as the termination message like
// an error, and returns exit code 3.
func refuse(stderr io.Writer, why string) int {
	writeLine(stderr, "certguard: refused: "+why)
	return exitRefused
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }
