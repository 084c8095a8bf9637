// Command convsync exports Twilio Conversations membership data (services,
// users, user conversations, conversations, participants) into DuckDB
// tables and/or Parquet datasets.
//
//	convsync export [flags]          snapshot every Conversation Service
//	convsync lookup [flags] SUBJECTS which conversations is this person in?
//	convsync fakeapi --listen ADDR   serve the simulated Conversations API
//	convsync sql [flags] QUERY       run one read-only SQL query over the outputs
//	convsync version                 print the version (also: --version)
//
// Credentials come from TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or with
// TWILIO_API_KEY and TWILIO_API_SECRET. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/convsync/convsync/extract"
)

const usage = `usage: convsync <command> [flags]

commands:
  export    snapshot every Conversation Service into DuckDB and/or Parquet
  lookup    find the conversations of identities or addresses
  fakeapi   serve the simulated Twilio Conversations API
  sql       run one SQL query over the outputs (read-only, embedded DuckDB)
  version   print the version, VCS revision, Go and DuckDB versions (also: --version)

Run 'convsync <command> -h' for the command's flags.
`

// memoryLimit is the Go heap's soft limit unless GOMEMLIMIT sets one: the
// collector works harder as the heap nears it, so that the process stays
// well under 1 GiB whatever a server sends (the pipeline's own bounds keep
// the live heap far below it).
const memoryLimit = 768 << 20

// gcPercent is the collector's target unless GOGC sets one: the heap may
// grow by half its live size between collections instead of doubling, a
// few percent more CPU for a third less memory once the pipeline's queues
// and row groups are full.
const gcPercent = 50

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries the process exit status for an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks bad input: exit status 2.
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// run executes one command and returns the exit status. Any failure ends
// with a one-line reason as the last line on stderr.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	ctx, stop := signalContext()
	defer stop()

	var err error
	var rep *report
	switch args[0] {
	case "export", "lookup":
		rep = &report{command: args[0], started: time.Now().UTC(), stdout: stdout, stderr: stderr}
		if args[0] == "export" {
			err = runExport(ctx, args[1:], stdout, stderr, rep)
		} else {
			err = runLookup(ctx, args[1:], stdout, stderr, rep)
		}
	case "fakeapi":
		err = runFakeAPI(ctx, args[1:], stdout, stderr)
	case "sql":
		err = runSQL(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		err = runVersion(ctx, args[1:], stdout, stderr)
	default:
		err = usageError("unknown command %q (want export, lookup, fakeapi, sql or version)", args[0])
	}
	if errors.Is(err, errHelp) {
		return 0
	}
	if err == nil {
		if rep != nil {
			rep.finish(0, "")
		}
		return 0
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if errors.Is(err, extract.ErrUnauthorized) {
		err = fmt.Errorf("%w (check TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and TWILIO_API_SECRET)", err)
	}
	if sig := caughtSignal(ctx); sig != nil {
		code = 128 + int(sig.(syscall.Signal))
		msg := fmt.Sprintf("interrupted by %s", signalName(sig))
		if args[0] == "export" || args[0] == "lookup" {
			msg += ": nothing was published, the outputs of the last good run are as they were"
		}
		if errors.Is(err, errResumable) {
			msg += "; " + errResumable.Error()
		}
		err = errors.New(msg)
	}
	reason := oneLine(err.Error())
	if rep != nil {
		rep.finish(code, reason)
	}
	fmt.Fprintf(stderr, "convsync: %s\n", reason)
	return code
}

// oneLine folds an error message onto a single line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// signalCause is the context cause recorded when a signal arrives.
type signalCause struct{ sig os.Signal }

func (s signalCause) Error() string { return "received " + signalName(s.sig) }

// terminating are the catchable signals that end a run cleanly.
var terminating = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

func signalName(sig os.Signal) string {
	switch sig {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return sig.String()
}

// publishing, once set, reports whether the run's publish has been
// decided: from then on signals no longer stop it.
var publishing atomic.Pointer[func() bool]

// watchPublish tells the signal handling how to know that the run's
// publish is decided.
func watchPublish(decided func() bool) { publishing.Store(&decided) }

func publishDecided() bool {
	f := publishing.Load()
	return f != nil && (*f)()
}

// signalContext returns a context cancelled, with a signalCause, at the
// first terminating signal. A second signal ends the process at once,
// unless the publish is decided: then it completes first.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, terminating...)
	go func() {
		sig, ok := <-ch
		if !ok {
			return
		}
		cancel(signalCause{sig})
		for sig = range ch {
			if s, ok := sig.(syscall.Signal); ok && !publishDecided() {
				fmt.Fprintf(os.Stderr, "convsync: interrupted by a second %s: stopped at once; the outputs of the last good run are as they were\n", signalName(sig))
				os.Exit(128 + int(s))
			}
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel(nil) }
}

// caughtSignal returns the signal that cancelled ctx, if any.
func caughtSignal(ctx context.Context) os.Signal {
	var sc signalCause
	if errors.As(context.Cause(ctx), &sc) {
		return sc.sig
	}
	return nil
}
