package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/testkit"
)

// TestMain prints the tables the benchmarks filled, and removes the
// binaries they built.
func TestMain(m *testing.M) {
	code := m.Run()
	printTables(os.Stdout)
	if toolDir != "" {
		os.RemoveAll(toolDir)
	}
	os.Exit(code)
}

// The binaries, built once per test process.
var (
	toolOnce    sync.Once
	toolDir     string
	toolErr     error
	convsyncBin string
	sdkBin      string
)

// tools builds convsync and sdkbaseline from the module root (go env GOMOD).
func tools(tb testing.TB) (convsync, sdk string) {
	tb.Helper()
	toolOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			toolErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		if toolDir, toolErr = os.MkdirTemp("", "convsync-bench-"); toolErr != nil {
			return
		}
		convsyncBin = filepath.Join(toolDir, "convsync")
		sdkBin = filepath.Join(toolDir, "sdkbaseline")
		for _, t := range [][2]string{{convsyncBin, "./cmd/convsync"}, {sdkBin, "./internal/bench/sdkbaseline"}} {
			cmd := exec.Command("go", "build", "-o", t[0], t[1])
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				toolErr = fmt.Errorf("go build %s: %v\n%s", t[1], err, out)
				return
			}
		}
	})
	if toolErr != nil {
		tb.Fatal(toolErr)
	}
	return convsyncBin, sdkBin
}

// sizes are the dataset size flags of `convsync fakeapi`; 0 keeps the demo
// dataset's value.
type sizes struct {
	Services, Users, Conversations, Participants, Large, Busy int
}

func (s sizes) args() []string {
	var a []string
	for _, f := range []struct {
		flag string
		v    int
	}{{"services", s.Services}, {"users", s.Users}, {"conversations", s.Conversations},
		{"participants", s.Participants}, {"large-conversation", s.Large}, {"busy-user", s.Busy}} {
		if f.v != 0 {
			a = append(a, "--"+f.flag, strconv.Itoa(f.v))
		}
	}
	return a
}

// config is the dataset the simulator builds from these flags (the demo
// dataset with the sizes given).
func (s sizes) config() fakeapi.DatasetConfig {
	c := fakeapi.DemoConfig()
	for _, f := range []struct {
		dst *int
		v   int
	}{{&c.Services, s.Services}, {&c.UsersPerService, s.Users}, {&c.ConversationsPerService, s.Conversations},
		{&c.ParticipantsPerConversation, s.Participants}, {&c.LargeConversationParticipants, s.Large},
		{&c.BusyUserConversations, s.Busy}} {
		if f.v != 0 {
			*f.dst = f.v
		}
	}
	return c
}

// minimal caches testkit.Requests per dataset.
var minimal = map[sizes]int64{}

// minimalRequests is the number of requests a full export of the dataset
// needs (every list at its maximum page size, nothing twice), computed on
// an in-process twin of the simulator's dataset.
func minimalRequests(tb testing.TB, s sizes) int64 {
	tb.Helper()
	if n, ok := minimal[s]; ok {
		return n
	}
	ds := fakeapi.NewDataset(s.config())
	srv, err := fakeapi.Start("127.0.0.1:0", fakeapi.Options{Dataset: ds})
	if err != nil {
		tb.Fatal(err)
	}
	n := testkit.Requests(ds, srv, nil)
	srv.Close()
	minimal[s] = n
	return n
}

// api is the simulated API in flight.
type api struct {
	sizes
	Latency       time.Duration
	MaxInFlight   int
	OtherInFlight int
}

// server is a running `convsync fakeapi` process.
type server struct {
	URL, AccountSID, AuthToken string
}

var (
	reBaseURL = regexp.MustCompile(`^base URL: (\S+)`)
	reCreds   = regexp.MustCompile(`^export TWILIO_ACCOUNT_SID=(\S+) TWILIO_AUTH_TOKEN=(\S+)`)
)

// startServer starts `convsync fakeapi` on a free port and reads the base
// URL and credentials it prints; the process is interrupted at cleanup.
func startServer(tb testing.TB, bin string, a api) *server {
	tb.Helper()
	args := []string{"fakeapi", "--listen", "127.0.0.1:0", "--latency", a.Latency.String(),
		"--max-in-flight", strconv.Itoa(a.MaxInFlight), "--other-in-flight", strconv.Itoa(a.OtherInFlight)}
	args = append(args, a.args()...)
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	tb.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	lines := make(chan string, 100) // it prints a handful
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, out)
		cmd.Wait()
		close(exited)
	}()
	s := &server{}
	timeout := time.After(2 * time.Minute)
	for s.URL == "" || s.AccountSID == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				<-exited
				tb.Fatalf("convsync %s exited before serving: %s", strings.Join(args, " "), stderr.String())
			}
			if m := reBaseURL.FindStringSubmatch(l); m != nil {
				s.URL = m[1]
			}
			if m := reCreds.FindStringSubmatch(l); m != nil {
				s.AccountSID, s.AuthToken = m[1], m[2]
			}
		case <-timeout:
			tb.Fatalf("convsync %s printed no base URL and credentials in 2 minutes", strings.Join(args, " "))
		}
	}
	go func() {
		for range lines {
		}
	}()
	return s
}

// serviceTime is the simulator's round trip as a client sees it: the
// median of n sequential requests for the smallest list (/v1/Services),
// on one kept-alive connection. It exceeds --latency by the simulator's
// sleep overshoot (Go timers wait in epoll with millisecond resolution: a
// 7.5 ms time.Sleep takes about 8.2 ms here) and its handling; the
// throughput benchmark reports its bound with it as well as with --latency.
func (s *server) serviceTime(tb testing.TB, n int) time.Duration {
	tb.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: time.Minute}
	ds := make([]time.Duration, 0, n)
	for range n {
		req, err := http.NewRequest(http.MethodGet, s.URL+"/v1/Services", nil)
		if err != nil {
			tb.Fatal(err)
		}
		req.SetBasicAuth(s.AccountSID, s.AuthToken)
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			tb.Fatalf("GET /v1/Services: %s", resp.Status)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// env is this process's environment without Twilio settings, plus the
// server's credentials.
func (s *server) env() []string {
	var e []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TWILIO_") {
			e = append(e, kv)
		}
	}
	return append(e, "TWILIO_ACCOUNT_SID="+s.AccountSID, "TWILIO_AUTH_TOKEN="+s.AuthToken)
}

// proc is a finished process, measured from outside.
type proc struct {
	Wall      time.Duration // from Start to the end of Wait
	User, Sys time.Duration // rusage
	MaxRSSKiB int64         // rusage ru_maxrss
	// FloorKiB is this process's own peak RSS when it started the child.
	// On Linux the child's ru_maxrss is never below it (the kernel folds
	// the spawner's address space high-water mark into it at exec), so
	// MaxRSSKiB measures the child only when it is well above FloorKiB.
	FloorKiB int64
	// HWMKiB is the child's VmHWM (/proc/PID/status, its own image's
	// peak RSS, without that floor), polled every 10 ms while it runs: a
	// cross-check of MaxRSSKiB that can miss a peak in its last 10 ms.
	HWMKiB int64
	// Load is the machine's 1-minute load average when the child started
	// (a shared 2-core machine: other work shows in the figures).
	Load           float64
	Stdout, Stderr []byte
	Err            error
}

func (p proc) CPU() time.Duration { return p.User + p.Sys }

func selfMaxRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss
}

// run runs a command to completion.
func run(env []string, dir, bin string, args ...string) proc {
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Dir = env, dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	p := proc{FloorKiB: selfMaxRSS(), Load: loadAvg()}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		p.Err = err
		return p
	}
	done := make(chan struct{})
	hwm := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, vmHWM(cmd.Process.Pid))
			select {
			case <-done:
				hwm <- peak
				return
			case <-t.C:
			}
		}
	}()
	p.Err = cmd.Wait()
	p.Wall = time.Since(start)
	close(done)
	p.HWMKiB = <-hwm
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		p.User = time.Duration(ru.Utime.Nano())
		p.Sys = time.Duration(ru.Stime.Nano())
		p.MaxRSSKiB = ru.Maxrss
	}
	p.Stdout, p.Stderr = stdout.Bytes(), stderr.Bytes()
	return p
}

// loadAvg is the 1-minute load average; 0 if unknown.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

var reHWM = regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB`)

// vmHWM reads a process's VmHWM in KiB; 0 once it has exited.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	m := reHWM.FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// rss describes a peak RSS for the logs, with its cross-checks.
func (p proc) rss() string {
	s := fmt.Sprintf("peak RSS %.0f MiB (VmHWM polled %.0f MiB; spawner's peak %.0f MiB", mib(p.MaxRSSKiB), mib(p.HWMKiB), mib(p.FloorKiB))
	if p.MaxRSSKiB <= p.FloorKiB+p.FloorKiB/20 {
		s += ", AT THE SPAWNER'S FLOOR: not the child's own"
	}
	return s + ")"
}

// export is a finished `convsync export`.
type export struct {
	proc
	Requests, Retries, Throttled int64
	Rows                         map[string]int64
	PeakInFlight, LimitFound     int
	// Failed counts the attempts that failed before this one (see
	// runExport).
	Failed int
}

func (e export) rows() int64 {
	var n int64
	for _, v := range e.Rows {
		n += v
	}
	return n
}

// runExport runs `convsync export` with default flags into a fresh DuckDB
// file and Parquet root, and reads its run record from the JSON log line
// "export finished" (the runs table's row). A failed run is logged and
// retried, twice at most, so that a crash of convsync shows in the figures
// (failed-runs) without ending the suite.
func runExport(tb testing.TB, bin string, s *server) export {
	tb.Helper()
	var failed int
	for {
		dir := tb.TempDir()
		p := run(s.env(), dir, bin, "export", "--base-url", s.URL, "--duckdb", filepath.Join(dir, "x.duckdb"),
			"--parquet", filepath.Join(dir, "pq"), "--progress", "off")
		e, err := parseExport(p)
		if err == nil {
			e.Failed = failed
			return e
		}
		failed++
		tb.Logf("convsync export FAILED (attempt %d): %v\n%s", failed, err, tail(p.Stderr, 3000))
		if failed == 3 {
			tb.Fatalf("convsync export failed %d times", failed)
		}
	}
}

func parseExport(p proc) (export, error) {
	e := export{proc: p}
	if p.Err != nil {
		return e, p.Err
	}
	var rec map[string]any
	for _, l := range bytes.Split(p.Stderr, []byte("\n")) {
		if !bytes.Contains(l, []byte(`"message":"export finished"`)) {
			continue
		}
		d := json.NewDecoder(bytes.NewReader(l))
		d.UseNumber()
		if err := d.Decode(&rec); err != nil {
			return e, fmt.Errorf("log line %q: %w", l, err)
		}
	}
	if rec == nil {
		return e, fmt.Errorf("no \"export finished\" log line")
	}
	num := func(k string) int64 {
		n, _ := rec[k].(json.Number)
		v, _ := n.Int64()
		return v
	}
	e.Requests, e.Retries, e.Throttled = num("requests"), num("retries"), num("throttled")
	e.Rows = map[string]int64{}
	for k := range rec {
		if t, ok := strings.CutPrefix(k, "rows_"); ok {
			e.Rows[t] = num(k)
		}
	}
	e.PeakInFlight, e.LimitFound = int(num("concurrency_peak")), int(num("concurrency_limit"))
	return e, nil
}

// sdkRun is a finished sdkbaseline.
type sdkRun struct {
	proc
	Requests int64            `json:"requests"`
	Rows     map[string]int64 `json:"rows"`
}

func runSDK(tb testing.TB, bin string, s *server) sdkRun {
	tb.Helper()
	p := run(s.env(), tb.TempDir(), bin, "--base-url", s.URL)
	r := sdkRun{proc: p}
	if p.Err != nil {
		tb.Fatalf("sdkbaseline: %v\n%s", p.Err, tail(p.Stderr, 3000))
	}
	if err := json.Unmarshal(p.Stdout, &r); err != nil {
		tb.Fatalf("sdkbaseline output %q: %v", p.Stdout, err)
	}
	return r
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// table collects one benchmark's rows for the summary TestMain prints.
type table struct {
	title  string
	header []string
	rows   [][]string
}

var (
	tablesMu sync.Mutex
	tables   []*table
)

// addRow adds a row to the table titled title (created with header).
func addRow(title string, header []string, row ...string) {
	tablesMu.Lock()
	defer tablesMu.Unlock()
	i := slices.IndexFunc(tables, func(t *table) bool { return t.title == title })
	if i < 0 {
		tables = append(tables, &table{title: title, header: header})
		i = len(tables) - 1
	}
	tables[i].rows = append(tables[i].rows, row)
}

// printTables writes the tables as Markdown.
func printTables(w io.Writer) {
	tablesMu.Lock()
	defer tablesMu.Unlock()
	for _, t := range tables {
		fmt.Fprintf(w, "\n%s\n\n| %s |\n|%s\n", t.title, strings.Join(t.header, " | "), strings.Repeat("---|", len(t.header)))
		for _, r := range t.rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
		}
	}
}

func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func f3(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
func d(v int64) string    { return strconv.FormatInt(v, 10) }
func secs(t time.Duration) string {
	return strconv.FormatFloat(t.Seconds(), 'f', 2, 64)
}
