package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// row is one benchmark: every run of one command, as measured.
type row struct {
	Label  string `json:"label"`
	User   string `json:"user,omitempty"` // the apiserver user it ran as; "" for no API
	Warmup int    `json:"warmup"`
	Certs  int    `json:"certs,omitempty"`
	Files  int    `json:"files,omitempty"`
	// Load is /proc/loadavg's 1-minute figure before and after the runs.
	LoadBefore float64 `json:"loadBefore"`
	LoadAfter  float64 `json:"loadAfter"`
	Runs       []run   `json:"runs"`
}

// run is one execution: wall time from fork to reaping, the CPU time and peak RSS that wait4
// reports for the process and every descendant it waited for (what /usr/bin/time -v prints).
type run struct {
	WallNS   int64 `json:"wallNs"`
	CPUNS    int64 `json:"cpuNs"`
	MaxRSSKB int64 `json:"maxRssKiB"`
}

// timeCmd runs a command -warmup times unmeasured, then -n times measured, each to completion
// before the next, and appends the row to -out as one JSON line. Any exit status other than
// -expect-exit fails the whole benchmark, with the command's stderr.
func timeCmd(args []string) error {
	fs := flag.NewFlagSet("time", flag.ContinueOnError)
	label := fs.String("label", "", "row label (required)")
	n := fs.Int("n", 50, "measured runs")
	warmup := fs.Int("warmup", 3, "unmeasured runs first (page cache, kubectl's discovery cache)")
	user := fs.String("user", "", "apiserver user the command runs as, for the request count")
	var warmupEnv []string
	fs.Func("warmup-env", "NAME=VALUE set for the warm-up runs only (repeatable), e.g. another apiserver user's KUBECONFIG", func(v string) error {
		if !strings.Contains(v, "=") {
			return errors.New("want NAME=VALUE")
		}
		warmupEnv = append(warmupEnv, v)
		return nil
	})
	freshEnv := fs.String("fresh-env", "", "set this variable to a new empty directory before every run (outside the timing)")
	expect := fs.Int("expect-exit", 0, "the exit status every run must have")
	outPath := fs.String("out", "", "file to append the JSON row to (required)")
	certs := fs.Int("certs", 0, "certificates in the pki dir (for the report)")
	files := fs.Int("files", 0, "files in the pki dir (for the report)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	argv := fs.Args()
	if *label == "" || *outPath == "" || len(argv) == 0 {
		return errors.New("-label, -out and a command after -- are required")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return err
	}
	errFile, err := os.CreateTemp("", "benchtool-stderr-")
	if err != nil {
		return err
	}
	defer os.Remove(errFile.Name())
	defer errFile.Close()

	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devNull.Close()

	r := row{Label: *label, User: *user, Warmup: *warmup, Certs: *certs, Files: *files, LoadBefore: loadavg()}
	for i := 0; i < *warmup+*n; i++ {
		env := os.Environ()
		if i < *warmup {
			env = append(env, warmupEnv...)
		}
		var fresh string
		if *freshEnv != "" {
			if fresh, err = os.MkdirTemp("", "benchtool-fresh-"); err != nil {
				return err
			}
			env = append(env, *freshEnv+"="+fresh)
		}
		if err := errFile.Truncate(0); err != nil {
			return err
		}
		if _, err := errFile.Seek(0, 0); err != nil {
			return err
		}
		cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Stdout: devNull, Stderr: errFile}
		start := time.Now()
		err := cmd.Start()
		if err == nil {
			err = cmd.Wait()
		}
		wall := time.Since(start)
		if fresh != "" {
			os.RemoveAll(fresh)
		}
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return err
		}
		if code := cmd.ProcessState.ExitCode(); code != *expect {
			msg, _ := os.ReadFile(errFile.Name())
			return fmt.Errorf("%s: run %d exited %d, want %d: %s\nstderr:\n%s", *label, i+1, code, *expect, strings.Join(argv, " "), msg)
		}
		if i < *warmup {
			continue
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		r.Runs = append(r.Runs, run{
			WallNS:   wall.Nanoseconds(),
			CPUNS:    (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Nanoseconds(),
			MaxRSSKB: ru.Maxrss,
		})
	}
	r.LoadAfter = loadavg()
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*outPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(b, '\n'))
	s := stats(r)
	fmt.Fprintf(os.Stderr, "  %-44s median %7.1f ms  p90 %7.1f ms  peak RSS %6.1f MiB  (load %.1f→%.1f)\n",
		*label, s.median, s.p90, s.rssMiB, r.LoadBefore, r.LoadAfter)
	return err
}

func loadavg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	fmt.Sscanf(string(b), "%f", &l)
	return l
}
