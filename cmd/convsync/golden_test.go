package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/version"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ with what the code prints now")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from what is printed now (run with -update if the change is meant):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// normalize replaces what differs from run to run by placeholders.
func normalize(s string, replace map[string]string) string {
	for from, to := range replace {
		s = strings.ReplaceAll(s, from, to)
	}
	for _, r := range []struct {
		re  *regexp.Regexp
		out string
	}{
		{regexp.MustCompile(`\d{8}T\d{6}Z-[0-9a-f]{6}`), "RUN_ID"},
		{regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z`), "TIME"},
		{regexp.MustCompile(`"duration_seconds":[0-9.e-]+`), `"duration_seconds":DURATION`},
		{regexp.MustCompile(`done in [0-9.]+(ms|s|µs|m[0-9.]+s)`), "done in DURATION"},
		{regexp.MustCompile(`"concurrency_limit":(\s*)\d+`), `"concurrency_limit":${1}LIMIT`},
		{regexp.MustCompile(`requests in flight: at most \d+, limit found \d+`), "requests in flight: at most PEAK, limit found LIMIT"},
		{regexp.MustCompile(`"concurrency_peak":\s*\d+`), `"concurrency_peak": PEAK`},
	} {
		s = r.re.ReplaceAllString(s, r.out)
	}
	return s
}

// TestGoldenHelp keeps the usage and every command's flags as users read
// them.
func TestGoldenHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"export", "-h"}, {"lookup", "-h"}, {"fakeapi", "-h"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		golden(t, "help-"+strings.TrimLeft(args[0], "-")+".golden", errb.String()+out.String())
	}
}

// TestGoldenSummaries keeps the text summary, the JSON summary and the run
// record of an export of the test dataset as users read them.
func TestGoldenSummaries(t *testing.T) {
	_, srv := startAPI(t, fakeapi.Faults{})
	dir := t.TempDir()
	db, pq := filepath.Join(dir, "c.duckdb"), filepath.Join(dir, "lake")
	replace := map[string]string{dir: "DIR", srv.URL(): "BASE_URL", version.Version(): "VERSION"}
	base := []string{"export", "--base-url", srv.URL(), "--duckdb", db, "--parquet", pq, "--snapshot-date", "2026-11-20"}
	text := runCmd(t, append(base, "--summary", "text")...)
	if text.code != 0 {
		t.Fatalf("exit %d: %s", text.code, text.stderr)
	}
	golden(t, "summary-text.golden", normalize(text.stdout, replace))
	js := runCmd(t, append(base, "--summary", "json")...)
	if js.code != 0 {
		t.Fatalf("exit %d: %s", js.code, js.stderr)
	}
	golden(t, "summary-json.golden", normalize(js.stdout, replace))
	records, _ := filepath.Glob(filepath.Join(pq, "_runs", "*.json"))
	if len(records) != 2 {
		t.Fatalf("run records %v, want two", records)
	}
	b, err := os.ReadFile(records[1])
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "run-record.golden", normalize(string(b), replace))
}
