package main

import (
	"bufio"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/faultpoint"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/schemas"
)

// binPath is a convsync binary built from this package for the tests
// that run it as a real process.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "convsync-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "convsync")
	if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build convsync: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// night is one night's state of a simulated account.
type night struct {
	ds   *fakeapi.Dataset
	srv  *fakeapi.Server
	want testkit.Tables
}

// startNight serves a small account whose data depends on seed.
func startNight(t *testing.T, seed int64, faults fakeapi.Faults) *night {
	t.Helper()
	cfg := fakeapi.DefaultConfig()
	cfg.Seed = seed
	ds := fakeapi.NewDataset(cfg)
	srv, err := fakeapi.Start("127.0.0.1:0", fakeapi.Options{Dataset: ds, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &night{ds: ds, srv: srv, want: testkit.Expected(t, ds, srv)}
}

func (n *night) env() []string {
	c := n.srv.Credentials()
	return []string{"TWILIO_ACCOUNT_SID=" + c.AccountSID, "TWILIO_AUTH_TOKEN=" + c.AuthToken}
}

// proc is a convsync process.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	code           int
	took           time.Duration
}

// startProc runs the convsync binary with args and extra environment.
func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(binPath, args...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	start := time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.took = time.Since(start)
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee) && ee.ExitCode() >= 0:
			p.code = ee.ExitCode()
		case errors.As(err, &ee):
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = 128 + int(ws.Signal())
			}
		default:
			p.code = -1
		}
		p.stdout.close()
		p.stderr.close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		p.cmd.Process.Kill()
		t.Fatalf("convsync did not end; stderr:\n%s", p.stderr.String())
	}
	return p.code
}

func (p *proc) lastLine() string {
	lines := strings.Split(strings.TrimRight(p.stderr.String(), "\n"), "\n")
	return lines[len(lines)-1]
}

// runProc runs convsync to its end.
func runProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := startProc(t, env, args...)
	p.wait(t)
	return p
}

// outs is a test's pair of outputs.
type outs struct{ dir, db, pq string }

func newOuts(t *testing.T) outs {
	dir := t.TempDir()
	return outs{dir: dir, db: filepath.Join(dir, "c.duckdb"), pq: filepath.Join(dir, "lake")}
}

func (o outs) exportArgs(n *night, extra ...string) []string {
	return append([]string{"export", "--base-url", n.srv.URL(), "--duckdb", o.db, "--parquet", o.pq,
		"--snapshot-date", "2026-11-20", "--progress", "off"}, extra...)
}

// nightOf tells, per export table and output, which of nights the table
// holds completely (its index), or -1 for none of them.
func (o outs) nightOf(t *testing.T, nights ...*night) map[string][2]int {
	t.Helper()
	out := map[string][2]int{}
	for _, tab := range schemas.Export {
		res := [2]int{-1, -1}
		duck, _ := testkit.QueryErr(o.db+"?access_mode=read_only", "SELECT * FROM "+tab.Name)
		pq, _ := testkit.QueryErr("", fmt.Sprintf("SELECT * FROM read_parquet('%s/%s/**/*.parquet', hive_partitioning = true)", o.pq, tab.Name))
		for i, n := range nights {
			if testkit.Matches(tab.Name, duck, n.want[tab.Name]) {
				res[0] = i
			}
			if testkit.Matches(tab.Name, pq, n.want[tab.Name]) {
				res[1] = i
			}
		}
		out[tab.Name] = res
	}
	return out
}

// all reports whether every table of both outputs holds night i.
func all(state map[string][2]int, i int) bool {
	for _, s := range state {
		if s != [2]int{i, i} {
			return false
		}
	}
	return true
}

// TestOverlappingRunsOnOneOutput: a second export started on the outputs
// of a run in flight exits 75 within seconds naming the output and changes
// nothing; the first completes, and both outputs match the dataset.
func TestOverlappingRunsOnOneOutput(t *testing.T) {
	n := startNight(t, 11, fakeapi.Faults{Latency: 20 * time.Millisecond})
	o := newOuts(t)
	first := startProc(t, n.env(), o.exportArgs(n, "--concurrency", "4")...)
	// The first run holds its outputs once it says it started.
	if !first.stderr.waitFor(t, `"message":"export started"`, 1) {
		t.Fatalf("the first run ended before it started: %s", first.lastLine())
	}
	for _, args := range [][]string{o.exportArgs(n), {"lookup", "--base-url", n.srv.URL(), "--duckdb", o.db, "--identity", "x", "--progress", "off"}} {
		second := runProc(t, n.env(), args...)
		if second.code != exitBusy {
			t.Errorf("%s while another run holds the outputs: exit %d, want %d; %s", args[0], second.code, exitBusy, second.lastLine())
		}
		select {
		case <-first.done:
			t.Errorf("the first run ended before the refused %s did: the refusal was not at once", args[0])
		default:
		}
		if s := summaryOf(t, second.stdout.String()); s.Requests != 0 {
			t.Errorf("the refused %s sent %d requests", args[0], s.Requests)
		}
		if last := second.lastLine(); !strings.Contains(last, "busy") || !(strings.Contains(last, o.db) || strings.Contains(last, o.pq)) {
			t.Errorf("the refusal does not name the busy output: %q", last)
		}
	}
	if code := first.wait(t); code != 0 {
		t.Fatalf("the first run: exit %d: %s", code, first.lastLine())
	}
	if state := o.nightOf(t, n); !all(state, 0) {
		t.Errorf("after the overlapping runs the outputs are not the dataset: %v", state)
	}
}

// watch sends sig to p as soon as the DuckDB file's WAL is created (the
// commit) or a file is moved into a table's partition of the Parquet
// root, whichever trigger is asked for, and reports whether it fired.
func watch(t *testing.T, o outs, p *proc, trigger string, sig syscall.Signal) <-chan bool {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	switch trigger {
	case "wal":
		dirs = []string{o.dir}
	case "parquet":
		for _, tab := range schemas.Export {
			dirs = append(dirs, filepath.Join(o.pq, tab.Name, "snapshot_date=2026-11-20"))
		}
	}
	for _, d := range dirs {
		if _, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
			t.Fatalf("watch %s: %v", d, err)
		}
	}
	fired := make(chan bool, 1)
	go func() {
		defer unix.Close(fd)
		buf := make([]byte, 4096)
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, _ := unix.Poll(fds, 50)
			select {
			case <-p.done:
				fired <- false
				return
			default:
			}
			if n <= 0 {
				continue
			}
			k, err := unix.Read(fd, buf)
			if err != nil || k <= 0 {
				continue
			}
			for off := 0; off+unix.SizeofInotifyEvent <= k; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				off += unix.SizeofInotifyEvent + int(ev.Len)
				if (trigger == "wal" && strings.HasSuffix(name, ".duckdb.wal")) || (trigger == "parquet" && name == "part-00000.parquet") {
					p.cmd.Process.Signal(sig)
					fired <- true
					return
				}
			}
		}
	}()
	return fired
}

// TestPublishSweep interrupts the next night's export at every step of its
// publish: killed (SIGKILL) at each fault point, and signalled (SIGTERM,
// SIGINT, SIGKILL) the moment the DuckDB commit starts writing its WAL or
// the first partition file is moved into place. After each, every table of
// each output holds the old night or the new one, completely; an exit 0
// comes with both outputs on the new night and only then; the next
// command on the outputs makes them agree; and `--resume` then finishes
// the new night.
func TestPublishSweep(t *testing.T) {
	old := startNight(t, 21, fakeapi.Faults{})
	next := startNight(t, 22, fakeapi.Faults{})
	type tc struct {
		name    string
		fault   string
		trigger string
		sig     syscall.Signal
	}
	var cases []tc
	for _, step := range []string{"finish", "pointers", "prepare", "decided", "duckdb-commit", "parquet:users", "parquet:participants", "run-record", "cleanup"} {
		cases = append(cases, tc{name: "kill at " + step, fault: step + ":kill"})
	}
	for _, trig := range []string{"wal", "parquet"} {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGKILL} {
			cases = append(cases, tc{name: sig.String() + " on " + trig, trigger: trig, sig: sig})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := newOuts(t)
			if p := runProc(t, old.env(), o.exportArgs(old)...); p.code != 0 {
				t.Fatalf("the old night: exit %d: %s", p.code, p.lastLine())
			}
			env := next.env()
			if c.fault != "" {
				env = append(env, faultpoint.EnvVar+"="+c.fault)
			}
			p := startProc(t, env, o.exportArgs(next)...)
			var fired <-chan bool
			if c.trigger != "" {
				fired = watch(t, o, p, c.trigger, c.sig)
			}
			code := p.wait(t)
			if fired != nil && !<-fired {
				t.Logf("the %s trigger did not fire before the run ended (exit %d)", c.trigger, code)
			}
			state := o.nightOf(t, old, next)
			for table, s := range state {
				if s[0] < 0 || s[1] < 0 {
					t.Errorf("%s: %s holds neither night completely (duckdb, parquet = %v)", c.name, table, s)
				}
			}
			if c.sig != syscall.SIGKILL && c.fault == "" && (code == 0) != all(state, 1) {
				t.Errorf("%s: exit %d with outputs %v: exit 0 must come exactly when both hold the new night", c.name, code, state)
			}
			if code != 0 && !strings.HasPrefix(p.lastLine(), "convsync: ") && c.sig != syscall.SIGKILL && c.fault == "" {
				t.Errorf("no one-line reason: %q", p.lastLine())
			}
			// The next command on the outputs (a query of the Parquet root, or
			// a lookup into the DuckDB file) first finishes a publish left
			// half done: then they agree.
			nextArgs := []string{"lookup", "--base-url", next.srv.URL(), "--duckdb", o.db, "--identity", "nobody", "--progress", "off"}
			if c.fault != "" {
				nextArgs = []string{"sql", "--parquet", o.pq, "SELECT count(*) FROM participants"}
			}
			if l := runProc(t, next.env(), nextArgs...); l.code != 0 {
				t.Fatalf("the next command (%s): exit %d: %s", nextArgs[0], l.code, l.lastLine())
			}
			after := o.nightOf(t, old, next)
			if !all(after, 0) && !all(after, 1) {
				t.Errorf("%s: after the next command the outputs disagree: %v", c.name, after)
			}
			if r := runProc(t, next.env(), o.exportArgs(next, "--resume")...); r.code != 0 {
				t.Fatalf("--resume: exit %d: %s", r.code, r.lastLine())
			}
			if final := o.nightOf(t, old, next); !all(final, 1) {
				t.Errorf("%s: after --resume the outputs are not the new night: %v", c.name, final)
			}
		})
	}
}

// TestCatchableSignalsEndCleanly: SIGINT, SIGTERM, SIGHUP and SIGQUIT
// mid-run each end the run with 128+signal and a one-line reason, leaving
// the last good run's outputs.
func TestCatchableSignalsEndCleanly(t *testing.T) {
	old := startNight(t, 31, fakeapi.Faults{})
	slow := startNight(t, 32, fakeapi.Faults{Latency: 20 * time.Millisecond})
	o := newOuts(t)
	if p := runProc(t, old.env(), o.exportArgs(old)...); p.code != 0 {
		t.Fatalf("the good run: exit %d: %s", p.code, p.lastLine())
	}
	before := o.outputHashes(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startProc(t, slow.env(), o.exportArgs(slow, "--concurrency", "2", "--log-level", "debug")...)
			// Well under way: ten requests answered.
			if !p.stderr.waitFor(t, `"message":"twilio request"`, 10) {
				t.Fatalf("the run ended early: %s", p.lastLine())
			}
			p.cmd.Process.Signal(sig)
			if code := p.wait(t); code != 128+int(sig) {
				t.Errorf("exit %d, want %d; %s", code, 128+int(sig), p.lastLine())
			}
			if last := p.lastLine(); !strings.HasPrefix(last, "convsync: interrupted by SIG") || strings.Contains(p.stderr.String(), "goroutine ") {
				t.Errorf("last line %q (or a stack dump on stderr)", last)
			}
			if state := o.nightOf(t, old, slow); !all(state, 0) {
				t.Errorf("outputs changed by the interrupted run: %v", state)
			}
			if after := o.outputHashes(t); !maps.Equal(before, after) {
				t.Errorf("the interrupted run changed bytes of the outputs")
			}
		})
	}
}

// outputHashes hashes the outputs proper: the DuckDB file and every file
// of the Parquet root but convsync's control folder.
func (o outs) outputHashes(t *testing.T) map[string]string {
	t.Helper()
	return testkit.HashTree(t, o.dir, func(p string) bool { return strings.Contains(p, ".convsync") })
}

// TestResumeAfterSIGTERM: an export stopped by SIGTERM after a few
// checkpoints exits 143 saying it can be resumed; `export --resume` then
// sends exactly the requests the checkpoint left to do and leaves both
// outputs holding the dataset.
func TestResumeAfterSIGTERM(t *testing.T) {
	n := startNight(t, 111, fakeapi.Faults{Latency: 10 * time.Millisecond})
	o := newOuts(t)
	args := o.exportArgs(n, "--concurrency", "2", "--checkpoint", "300ms")
	p := startProc(t, n.env(), append(args, "--log-level", "debug")...)
	if !p.stderr.waitFor(t, `"message":"checkpoint taken"`, 3) {
		t.Fatalf("the run ended before three checkpoints: %s", p.lastLine())
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 143 || !strings.Contains(p.lastLine(), "--resume") {
		t.Fatalf("exit %d, %q; want 143 saying --resume continues it", code, p.lastLine())
	}
	cp := findCheckpoint(o.pq)
	if cp == nil {
		t.Fatal("no checkpoint kept")
	}
	left := testkit.DoneFrom(t, cp)
	r := runProc(t, n.env(), append(args, "--resume")...)
	if r.code != 0 {
		t.Fatalf("--resume: exit %d: %s", r.code, r.lastLine())
	}
	s := summaryOf(t, r.stdout.String())
	if want := testkit.Requests(n.ds, n.srv, left); s.Requests-left.Requests != want {
		t.Errorf("the resumed run sent %d requests; the checkpoint left exactly %d", s.Requests-left.Requests, want)
	}
	if state := o.nightOf(t, n); !all(state, 0) {
		t.Errorf("after --resume: %v", state)
	}
	if cp := findCheckpoint(o.pq); cp != nil {
		t.Error("a checkpoint is left after the resumed run published")
	}
}

// TestDuckDBPathsRefusedOrWaited: a --duckdb that is a Parquet file or a
// directory is refused (exit 2) before any request is sent; a DuckDB file
// a reader holds open is waited for, then the run exits 75 keeping what it
// fetched, and --resume publishes it without fetching again.
func TestDuckDBPathsRefusedOrWaited(t *testing.T) {
	n := startNight(t, 41, fakeapi.Faults{})
	dir := t.TempDir()
	o := newOuts(t)
	if p := runProc(t, n.env(), o.exportArgs(n)...); p.code != 0 {
		t.Fatal(p.lastLine())
	}
	part := filepath.Join(o.pq, "users", "snapshot_date=2026-11-20", "part-00000.parquet")
	for name, path := range map[string]string{"a Parquet file": part, "a directory": dir} {
		t.Run(name, func(t *testing.T) {
			n.srv.ResetCounters()
			p := runProc(t, n.env(), "export", "--base-url", n.srv.URL(), "--duckdb", path, "--progress", "off")
			if p.code != 2 || !strings.Contains(p.lastLine(), path) {
				t.Errorf("exit %d, %q; want 2 naming %s", p.code, p.lastLine(), path)
			}
			if got := n.srv.Counters().Requests; got != 0 {
				t.Errorf("%d requests sent before the output was refused", got)
			}
		})
	}
	t.Run("held by a reader", func(t *testing.T) {
		holder := exec.Command(os.Args[0], "-test.run=^TestHelperHoldDuckDB$")
		holder.Env = append(os.Environ(), "CONVSYNC_HOLD_DUCKDB="+o.db)
		stdin, _ := holder.StdinPipe()
		stdout, _ := holder.StdoutPipe()
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		if line, _ := bufio.NewReader(stdout).ReadString('\n'); !strings.Contains(line, "holding") {
			t.Fatalf("the reader process: %q", line)
		}
		n.srv.ResetCounters()
		p := runProc(t, n.env(), o.exportArgs(n, "--lock-wait", "1s")...)
		fetched := n.srv.Counters().Requests
		if p.code != exitBusy || !strings.Contains(p.lastLine(), "--resume") {
			t.Errorf("with a reader past --lock-wait: exit %d, %q; want %d and the --resume advice", p.code, p.lastLine(), exitBusy)
		}
		stdin.Close()
		holder.Wait()
		n.srv.ResetCounters()
		if r := runProc(t, n.env(), o.exportArgs(n, "--resume")...); r.code != 0 {
			t.Fatalf("--resume: exit %d: %s", r.code, r.lastLine())
		}
		if again := n.srv.Counters().Requests; again > 1 {
			t.Errorf("--resume sent %d requests after a run that fetched everything (%d requests); want the services list at most", again, fetched)
		}
		if state := o.nightOf(t, n); !all(state, 0) {
			t.Errorf("after --resume: %v", state)
		}
	})
}

// TestHelperHoldDuckDB is not a test: run with CONVSYNC_HOLD_DUCKDB set,
// it holds that DuckDB file open read-only (another process, as a reader
// is) until its stdin closes.
func TestHelperHoldDuckDB(t *testing.T) {
	path := os.Getenv("CONVSYNC_HOLD_DUCKDB")
	if path == "" {
		t.Skip("a helper process for TestDuckDBPathsRefusedOrWaited")
	}
	db, err := sql.Open("duckdb", path+"?access_mode=read_only")
	if err == nil {
		err = db.Ping()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fmt.Println("holding")
	io.ReadAll(os.Stdin)
}

// TestLossBoundOnKill kills (SIGKILL) an export at several instants and
// resumes it: what the two runs fetched twice, turned into time at the
// killed run's own request rate, stays within the loss bound
// max(2 s, min(60 s, 5% of the elapsed time)), and the resumed run then
// leaves both outputs holding the dataset exactly.
func TestLossBoundOnKill(t *testing.T) {
	n := startNight(t, 71, fakeapi.Faults{Latency: 25 * time.Millisecond})
	minimal := testkit.Requests(n.ds, n.srv, nil)
	for _, at := range []time.Duration{800 * time.Millisecond, 2 * time.Second, 3200 * time.Millisecond} {
		t.Run(at.String(), func(t *testing.T) {
			o := newOuts(t)
			args := o.exportArgs(n, "--concurrency", "4")
			n.srv.ResetCounters()
			p := startProc(t, n.env(), args...)
			time.Sleep(at)
			p.cmd.Process.Signal(syscall.SIGKILL)
			if code := p.wait(t); code != 128+int(syscall.SIGKILL) {
				t.Skipf("the run ended (exit %d) before it was killed at %s: the machine is faster than this test assumes", code, at)
			}
			first := n.srv.Counters().Requests
			n.srv.ResetCounters()
			r := runProc(t, n.env(), append(args, "--resume")...)
			if r.code != 0 {
				t.Fatalf("--resume: exit %d: %s", r.code, r.lastLine())
			}
			second := n.srv.Counters().Requests
			twice := first + second - minimal
			rate := float64(first) / at.Seconds()
			lost := time.Duration(float64(twice) / rate * float64(time.Second))
			bound := max(2*time.Second, min(60*time.Second, at/20))
			t.Logf("killed at %s after %d requests (%.0f/s); the resume sent %d; the minimum is %d: %d fetched twice, %s of fetching lost (bound %s)",
				at, first, rate, second, minimal, twice, lost.Round(time.Millisecond), bound)
			if lost > bound {
				t.Errorf("%s of fetching lost by a kill at %s, over the bound %s", lost, at, bound)
			}
			if state := o.nightOf(t, n); !all(state, 0) {
				t.Errorf("after the resume: %v", state)
			}
		})
	}
}
