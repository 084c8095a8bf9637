package version

import (
	"bytes"
	"context"
	"database/sql"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	_ "github.com/marcboeker/go-duckdb/v2"
)

func TestFromBuildInfo(t *testing.T) {
	const rev = "2c888c3f1e2a8d6b1e0f3c8a7d5e4b3a2c1d0e9f"
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	cases := []struct {
		name     string
		version  string
		settings []debug.BuildSetting
		want     build
		short    string
	}{
		{"go run or go test: nothing recorded", "", nil,
			build{Devel, Unknown, Unknown, "go1.26.8"}, "(devel)"},
		{"checkout, -buildvcs=false", "(devel)", settings("-buildmode", "exe", "CGO_ENABLED", "1"),
			build{Devel, Unknown, Unknown, "go1.26.8"}, "(devel)"},
		{"checkout, clean", "(devel)", settings("vcs", "git", "vcs.revision", rev, "vcs.modified", "false"),
			build{Devel, rev, "false", "go1.26.8"}, "(devel) 2c888c3f1e2a"},
		{"checkout, modified", "(devel)", settings("vcs.revision", rev, "vcs.modified", "true"),
			build{Devel, rev, "true", "go1.26.8"}, "(devel) 2c888c3f1e2a+dirty"},
		{"pseudo-version stamped by go build", "v0.0.0-20261120041500-2c888c3f1e2a+dirty", settings("vcs.revision", rev, "vcs.modified", "true"),
			build{"v0.0.0-20261120041500-2c888c3f1e2a+dirty", rev, "true", "go1.26.8"}, "v0.0.0-20261120041500-2c888c3f1e2a+dirty"},
		{"go install at a tag", "v1.2.3", nil,
			build{"v1.2.3", Unknown, Unknown, "go1.26.8"}, "v1.2.3"},
		{"short revision kept whole", "(devel)", settings("vcs.revision", "abc1234"),
			build{Devel, "abc1234", Unknown, "go1.26.8"}, "(devel) abc1234"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/convsync/convsync", Version: tc.version}, Settings: tc.settings}
			got := fromBuildInfo(bi)
			if got != tc.want {
				t.Errorf("fromBuildInfo = %+v, want %+v", got, tc.want)
			}
			if s := got.short(); s != tc.short {
				t.Errorf("short = %q, want %q", s, tc.short)
			}
		})
	}
}

// TestInfo: the running (test) binary's details, and that the DuckDB version
// is the library's own answer.
func TestInfo(t *testing.T) {
	ctx := context.Background()
	d, err := Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var lib string
	if err := db.QueryRow("SELECT library_version FROM pragma_version()").Scan(&lib); err != nil {
		t.Fatal(err)
	}
	if d.DuckDB != lib || !regexp.MustCompile(`^v\d+\.\d+\.\d+`).MatchString(lib) {
		t.Errorf("DuckDB = %q, pragma_version says %q", d.DuckDB, lib)
	}
	if d.GoVersion != runtime.Version() {
		t.Errorf("GoVersion = %q, want %q", d.GoVersion, runtime.Version())
	}
	// A test binary records no VCS settings.
	if d.Version == "" || d.Revision == "" || d.Modified == "" {
		t.Errorf("empty field in %+v", d)
	}
	if v := Version(); v == "" || strings.Contains(v, "\n") {
		t.Errorf("Version() = %q", v)
	}
}

func TestWrite(t *testing.T) {
	var buf bytes.Buffer
	d := Details{Version: "(devel)", Revision: "unknown", Modified: "unknown", GoVersion: "go1.26.8", DuckDB: "v1.4.1"}
	if err := d.Write(&buf); err != nil {
		t.Fatal(err)
	}
	want := "version: (devel)\nrevision: unknown\nmodified: unknown\ngo: go1.26.8\nduckdb: v1.4.1\n"
	if buf.String() != want {
		t.Errorf("Write:\n%s\nwant:\n%s", buf.String(), want)
	}
}
