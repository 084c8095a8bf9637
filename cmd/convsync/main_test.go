package main

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/sink/stage"
)

// startAPI serves a simulated account on loopback and points the TWILIO_*
// variables at its credentials.
func startAPI(t *testing.T, faults fakeapi.Faults) (*fakeapi.Dataset, *fakeapi.Server) {
	t.Helper()
	ds := fakeapi.NewDataset(fakeapi.DefaultConfig())
	srv, err := fakeapi.Start("127.0.0.1:0", fakeapi.Options{Dataset: ds, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c := srv.Credentials()
	t.Setenv("TWILIO_ACCOUNT_SID", c.AccountSID)
	t.Setenv("TWILIO_AUTH_TOKEN", c.AuthToken)
	t.Setenv("TWILIO_API_KEY", "")
	t.Setenv("TWILIO_API_SECRET", "")
	return ds, srv
}

type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func (r result) lastStderrLine() string {
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	return lines[len(lines)-1]
}

func runCmd(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(append(args, "--progress", "off"), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
}

// TestRejectedCredentialsLeaveOutputsUnchanged: after a good run, an export
// with credentials the API rejects exits non-zero within seconds with a
// one-line reason last on stderr, and the DuckDB file and Parquet datasets
// are byte-for-byte as the good run left them.
func TestRejectedCredentialsLeaveOutputsUnchanged(t *testing.T) {
	ds, srv := startAPI(t, fakeapi.Faults{})
	dir := t.TempDir()
	db, pq := filepath.Join(dir, "c.duckdb"), filepath.Join(dir, "pq")
	good := runCmd(t, "export", "--base-url", srv.URL(), "--duckdb", db, "--parquet", pq, "--snapshot-date", "2026-11-20")
	if good.code != 0 {
		t.Fatalf("good run: exit %d: %s", good.code, good.stderr)
	}
	want := testkit.Expected(t, ds, srv)
	if got := testkit.Query(t, db, "SELECT count(*) AS n FROM participants")[0]["n"]; got != int64(len(want["participants"])) {
		t.Fatalf("good run wrote %v participants, want %d", got, len(want["participants"]))
	}
	before := testkit.HashTree(t, dir, nil)

	cases := []struct {
		name string
		env  map[string]string
	}{
		{"wrong auth token", map[string]string{"TWILIO_AUTH_TOKEN": strings.Repeat("0", 32)}},
		{"unknown API key", map[string]string{"TWILIO_API_KEY": "SK" + strings.Repeat("1", 32), "TWILIO_API_SECRET": "nope"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			// Same date and a new one: neither may touch the outputs.
			for _, date := range []string{"2026-11-20", "2026-11-21"} {
				r := runCmd(t, "export", "--base-url", srv.URL(), "--duckdb", db, "--parquet", pq, "--snapshot-date", date)
				if r.code == 0 {
					t.Fatalf("exit 0 with rejected credentials")
				}
				last := r.lastStderrLine()
				if !strings.HasPrefix(last, "convsync: ") || !strings.Contains(last, "401") || !strings.Contains(last, "TWILIO_") {
					t.Errorf("last stderr line = %q, want a one-line reason naming the 401 and the TWILIO_ variables", last)
				}
				if sum := summaryOf(t, r.stdout); sum.Requests != 1 || sum.Retries != 0 {
					t.Errorf("%d requests and %d retries: rejected credentials must stop the run at once", sum.Requests, sum.Retries)
				}
				for _, secret := range tc.env {
					if strings.Contains(r.stderr+r.stdout, secret) {
						t.Errorf("output reveals a credential")
					}
				}
				if after := testkit.HashTree(t, dir, nil); !maps.Equal(before, after) {
					t.Errorf("outputs changed after the failed run:\nbefore %v\nafter  %v", before, after)
				}
			}
		})
	}
}

func TestBadInputIsOneLineUsageError(t *testing.T) {
	t.Setenv("CONVSYNC_PII_KEY", "")
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"bad pii mode", []string{"export", "--demo", "--pii", "scramble"}, "--pii"},
		{"hash without key", []string{"export", "--demo", "--pii", "hash", "--duckdb", filepath.Join(dir, "x.duckdb")}, "CONVSYNC_PII_KEY"},
		{"bad date", []string{"export", "--demo", "--snapshot-date", "22/11/2026"}, "--snapshot-date"},
		{"bad service", []string{"export", "--demo", "--services", "IS123"}, "--services"},
		{"bad base url", []string{"export", "--base-url", "ftp://x"}, "--base-url"},
		{"missing folder", []string{"export", "--demo", "--duckdb", filepath.Join(dir, "nope", "x.duckdb")}, "does not exist"},
		{"unknown flag", []string{"export", "--frobnicate"}, "frobnicate"},
		{"lookup without subjects", []string{"lookup", "--demo"}, "at least one"},
		{"bad subjects file line", []string{"lookup", "--demo", "--from", writeFile(t, dir, "s.txt", "identity:ok\n+15559876543\n")}, "line 2"},
		{"history without duckdb", []string{"export", "--demo", "--history", "--parquet", dir}, "--history"},
		{"bad concurrency", []string{"export", "--demo", "--concurrency", "0"}, "--concurrency"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runCmd(t, tc.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", r.code, r.stderr)
			}
			last := r.lastStderrLine()
			if !strings.HasPrefix(last, "convsync: ") || !strings.Contains(last, tc.want) {
				t.Errorf("last stderr line %q, want a one-line reason mentioning %q", last, tc.want)
			}
			if strings.Contains(tc.name, "subjects file") && strings.Contains(r.stderr, "15559876543") {
				t.Errorf("error echoes a subject: %q", r.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "x.duckdb")); err == nil {
		t.Error("a refused run created its DuckDB file")
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer is a bytes.Buffer safe for one writer and readers, which can
// wait for what it is written (waitFor).
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // closed and replaced at every write
	closed  bool
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written != nil {
		close(s.written)
		s.written = nil
	}
	return s.b.Write(p)
}

// close wakes every waiter for good: no more is written.
func (s *syncBuffer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.written != nil {
		close(s.written)
		s.written = nil
	}
}

// waitFor waits until the text written holds sub n times, and reports
// whether it did before the writer closed (or the test's deadline).
func (s *syncBuffer) waitFor(t *testing.T, sub string, n int) bool {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		s.mu.Lock()
		if strings.Count(s.b.String(), sub) >= n {
			s.mu.Unlock()
			return true
		}
		if s.closed {
			s.mu.Unlock()
			return false
		}
		if s.written == nil {
			s.written = make(chan struct{})
		}
		ch := s.written
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("waited a minute for %q (%d times)", sub, n)
		}
	}
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFakeAPICommand starts `convsync fakeapi`, reads the base URL and
// credentials it prints, and uses them: they are accepted, others are not.
func TestFakeAPICommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runFakeAPI(ctx, []string{"--listen", "127.0.0.1:0", "--demo-data=false", "--rate-429", "0"}, &out, io.Discard)
	}()
	re := regexp.MustCompile(`base URL: (\S+)\nexport TWILIO_ACCOUNT_SID=(\S+) TWILIO_AUTH_TOKEN=(\S+)`)
	out.waitFor(t, "then:", 1)
	m := re.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("fakeapi printed no base URL and credentials:\n%s", out.String())
	}
	for _, tc := range []struct {
		user, pass string
		want       int
	}{{m[2], m[3], 200}, {m[2], "wrong", 401}} {
		req, _ := http.NewRequest("GET", m[1]+"/v1/Services", nil)
		req.SetBasicAuth(tc.user, tc.pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET /v1/Services with %s credentials: %d, want %d", map[int]string{200: "printed", 401: "wrong"}[tc.want], resp.StatusCode, tc.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("fakeapi: %v", err)
	}
}

// findCheckpoint returns the checkpoint of a run staged in the Parquet
// root's control folder, if any.
func findCheckpoint(pq string) *stage.Checkpoint {
	dirs, _ := filepath.Glob(filepath.Join(pq, ".convsync", "staging-*"))
	for _, d := range dirs {
		if cp, err := stage.ReadCheckpoint(d); err == nil {
			return cp
		}
	}
	return nil
}

// TestProgressAndSummary: a live progress line on request, structured
// progress logs otherwise, and the summary with rows per table, requests
// and time either way.
func TestProgressAndSummary(t *testing.T) {
	_, srv := startAPI(t, fakeapi.Faults{Latency: 2 * time.Millisecond})
	for _, mode := range []string{"on", "off"} {
		t.Run(mode, func(t *testing.T) {
			var out, errb bytes.Buffer
			db := filepath.Join(t.TempDir(), "c.duckdb")
			code := run([]string{"export", "--base-url", srv.URL(), "--duckdb", db, "--progress", mode, "--concurrency", "2", "--summary", "text"}, &out, &errb)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			stderr := errb.String()
			live := strings.Contains(stderr, "\r\033[K") && strings.Contains(stderr, "participants ")
			if live != (mode == "on") {
				t.Errorf("--progress %s: live line drawn = %v", mode, live)
			}
			// Every log line is whole JSON, never glued to a progress line.
			for _, l := range strings.Split(stderr, "\n") {
				if l = strings.TrimPrefix(l, "\r\033[K"); l != "" && !strings.HasPrefix(l, "{") && !strings.Contains(l, " req ") {
					t.Errorf("stray stderr line %q", l)
				}
			}
			if mode == "off" && !strings.Contains(stderr, `"message":"progress"`) {
				t.Error("no structured progress log")
			}
			for _, want := range []string{"participants", "user_conversations", "requests", "retries", "done in"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("summary lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}
