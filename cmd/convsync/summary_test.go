package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/internal/version"
	"github.com/convsync/convsync/schemas"
)

// summaryOf parses the one JSON line a run printed on stdout.
func summaryOf(t *testing.T, stdout string) jsonSummary {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout holds %d lines, want one JSON object:\n%s", len(lines), stdout)
	}
	var s jsonSummary
	if err := json.Unmarshal([]byte(lines[0]), &s); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	return s
}

// metricsOf reads a Prometheus text file into name{labels} -> value.
func metricsOf(t *testing.T, path string) map[string]float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", l, err)
		}
		out[l[:i]] = v
	}
	return out
}

// TestSummaryAndMetrics: a successful and a failed export each print one
// JSON object on stdout (the default off a terminal) whose counts match
// the dataset, and write the metrics file; the failed run keeps the time
// of the last success, logs its failure as a JSON record, and still ends
// stderr with the one-line reason.
func TestSummaryAndMetrics(t *testing.T) {
	ds, srv := startAPI(t, fakeapi.Faults{})
	dir := t.TempDir()
	db, metrics := filepath.Join(dir, "c.duckdb"), filepath.Join(dir, "textfile", "convsync.prom")
	ok := runCmd(t, "export", "--base-url", srv.URL(), "--duckdb", db, "--metrics-file", metrics)
	if ok.code != 0 {
		t.Fatalf("exit %d: %s", ok.code, ok.stderr)
	}
	s := summaryOf(t, ok.stdout)
	want := testkit.Expected(t, ds, srv)
	if s.Status != "succeeded" || s.ExitCode != 0 || s.Command != "export" || s.RunID == "" || s.Error != "" || s.Version != version.Version() {
		t.Errorf("summary %+v", s)
	}
	for _, tab := range schemas.Export {
		if s.Rows[tab.Name] != int64(len(want[tab.Name])) {
			t.Errorf("summary: %s %d rows, the dataset %d", tab.Name, s.Rows[tab.Name], len(want[tab.Name]))
		}
	}
	if s.Requests != testkit.Requests(ds, srv, nil) || len(s.Outputs) != 1 || s.Outputs[0] != db {
		t.Errorf("summary requests %d (minimum %d), outputs %v", s.Requests, testkit.Requests(ds, srv, nil), s.Outputs)
	}
	m := metricsOf(t, metrics)
	succeededAt := m[`convsync_last_success_timestamp_seconds{command="export"}`]
	if m[`convsync_last_run_success{command="export"}`] != 1 || succeededAt == 0 ||
		m[`convsync_last_run_rows{command="export",table="participants"}`] != float64(len(want["participants"])) ||
		m[`convsync_last_run_requests{command="export"}`] != float64(s.Requests) {
		t.Errorf("metrics after the success: %v", m)
	}

	t.Setenv("TWILIO_AUTH_TOKEN", strings.Repeat("0", 32))
	bad := runCmd(t, "export", "--base-url", srv.URL(), "--duckdb", db, "--metrics-file", metrics)
	if bad.code != 1 {
		t.Fatalf("exit %d with rejected credentials", bad.code)
	}
	f := summaryOf(t, bad.stdout)
	if f.Status != "failed" || f.ExitCode != 1 || !strings.Contains(f.Error, "401") || f.Error != strings.TrimPrefix(bad.lastStderrLine(), "convsync: ") {
		t.Errorf("failed run's summary %+v; last stderr line %q", f, bad.lastStderrLine())
	}
	lines := strings.Split(strings.TrimRight(bad.stderr, "\n"), "\n")
	var rec map[string]any
	if len(lines) < 2 || json.Unmarshal([]byte(lines[len(lines)-2]), &rec) != nil || rec["level"] != "error" || rec["exit_code"] != float64(1) {
		t.Errorf("the line before the reason is not the failure as a JSON record: %q", lines[max(0, len(lines)-2)])
	}
	m = metricsOf(t, metrics)
	if m[`convsync_last_run_success{command="export"}`] != 0 || m[`convsync_last_run_exit_code{command="export"}`] != 1 ||
		m[`convsync_last_success_timestamp_seconds{command="export"}`] != succeededAt {
		t.Errorf("metrics after the failure (last success should stay %v): %v", succeededAt, m)
	}

	usage := runCmd(t, "export", "--concurrency", "0")
	if u := summaryOf(t, usage.stdout); usage.code != 2 || u.Status != "failed" || u.ExitCode != 2 || !strings.Contains(u.Error, "--concurrency") {
		t.Errorf("bad input: exit %d, summary %+v", usage.code, u)
	}
}

// TestRefusedConnectionFailsFast: an API address where nothing listens
// fails the first request within seconds, naming the base URL.
func TestRefusedConnectionFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	t.Setenv("TWILIO_ACCOUNT_SID", "AC"+strings.Repeat("a", 32))
	t.Setenv("TWILIO_AUTH_TOKEN", "token")
	for _, base := range []string{"http://" + addr, "http://no-such-host.invalid"} {
		r := runCmd(t, "export", "--base-url", base, "--duckdb", filepath.Join(t.TempDir(), "c.duckdb"))
		if s := summaryOf(t, r.stdout); r.code != 1 || s.Requests != 1 || s.Retries != 0 {
			t.Errorf("%s: exit %d after %d requests and %d retries; want 1 at the first request, not retried", base, r.code, s.Requests, s.Retries)
		}
		if last := r.lastStderrLine(); !strings.Contains(last, "cannot reach the API at "+base) {
			t.Errorf("%s: last line %q does not name the base URL", base, last)
		}
		if strings.Contains(r.lastStderrLine(), "--resume") {
			t.Errorf("a run that fetched nothing suggests --resume: %q", r.lastStderrLine())
		}
	}
}
