// Package version says which convsync this is: the module version and VCS
// revision the binary was built from (runtime/debug.ReadBuildInfo), the Go
// toolchain, and the version of the DuckDB library linked in through
// go-duckdb.
//
// Version is the short form a run record carries; Info returns every field,
// as `convsync version` prints them.
package version

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	duckdb "github.com/marcboeker/go-duckdb/v2"
)

// Unknown stands for a build setting the binary does not carry: `go run`,
// `go test` and builds with -buildvcs=false (or outside a checkout) record
// no VCS revision.
const Unknown = "unknown"

// Devel is the module version Go records for a binary built from a checkout
// of the main module rather than installed at a version (`go install
// module@v1.2.3`).
const Devel = "(devel)"

// Details describe the running binary. Every field is set: a value the
// build did not record is Unknown.
type Details struct {
	// Version is the main module's version: a tag such as v1.2.3, a Go
	// pseudo-version (v0.0.0-20261120041500-2c888c3f1e2a, "+dirty" when the
	// tree was modified) or Devel.
	Version string
	// Revision is the full VCS revision (vcs.revision), or Unknown.
	Revision string
	// Modified is "true" or "false" (vcs.modified: the tree had uncommitted
	// changes), or Unknown.
	Modified string
	// GoVersion is the Go toolchain that built the binary, e.g. go1.26.8.
	GoVersion string
	// DuckDB is the embedded DuckDB library's version as DuckDB reports it
	// (SELECT library_version FROM pragma_version()), e.g. v1.4.1.
	DuckDB string
}

// build is what debug.ReadBuildInfo gives, reduced to the fields used here.
type build struct {
	version, revision, modified, goVersion string
}

// readBuild reads the binary's build information.
func readBuild() build {
	b := build{version: Devel, revision: Unknown, modified: Unknown, goVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	return fromBuildInfo(bi)
}

// fromBuildInfo extracts the fields from bi; absent ones are Devel or
// Unknown.
func fromBuildInfo(bi *debug.BuildInfo) build {
	b := build{version: bi.Main.Version, revision: Unknown, modified: Unknown, goVersion: bi.GoVersion}
	if b.version == "" {
		b.version = Devel
	}
	if b.goVersion == "" {
		b.goVersion = runtime.Version()
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				b.revision = s.Value
			}
		case "vcs.modified":
			if s.Value == "true" || s.Value == "false" {
				b.modified = s.Value
			}
		}
	}
	return b
}

// short formats b as Version does.
func (b build) short() string {
	if b.version != Devel {
		// A tag or a pseudo-version: Go already put the revision and
		// "+dirty" into it where they apply.
		return b.version
	}
	if b.revision == Unknown {
		return Devel
	}
	rev := b.revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	s := Devel + " " + rev
	if b.modified == "true" {
		s += "+dirty"
	}
	return s
}

// Version returns the binary's version in one short string for run records
// and logs: the module version when the binary was built at one (v1.2.3, or
// a Go pseudo-version such as v0.0.0-20261120041500-2c888c3f1e2a+dirty);
// otherwise "(devel)", followed by the first 12 digits of the VCS revision
// when the build recorded one, and "+dirty" when the tree was modified:
// "(devel) 2c888c3f1e2a+dirty".
func Version() string {
	return readBuild().short()
}

// Info returns the binary's version details, asking an in-memory DuckDB for
// the library's version. On error the other fields are still set.
func Info(ctx context.Context) (Details, error) {
	b := readBuild()
	d := Details{
		Version:   b.version,
		Revision:  b.revision,
		Modified:  b.modified,
		GoVersion: b.goVersion,
		DuckDB:    Unknown,
	}
	v, err := DuckDBVersion(ctx)
	if err != nil {
		return d, err
	}
	d.DuckDB = v
	return d, nil
}

// DuckDBVersion returns the embedded DuckDB library's version, e.g. v1.4.1:
// SELECT library_version FROM pragma_version() on an in-memory database.
func DuckDBVersion(ctx context.Context) (string, error) {
	connector, err := duckdb.NewConnector("", nil)
	if err != nil {
		return "", fmt.Errorf("open an in-memory DuckDB: %w", err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	var v string
	if err := db.QueryRowContext(ctx, "SELECT library_version FROM pragma_version()").Scan(&v); err != nil {
		return "", fmt.Errorf("ask DuckDB its version: %w", err)
	}
	return v, nil
}

// Write prints d one field a line, "key: value" (one space after the
// colon, no padding), always these five lines in this order:
//
//	version: (devel)
//	revision: 2c888c3f1e2a8d6b1e0f3c8a7d5e4b3a2c1d0e9f
//	modified: false
//	go: go1.26.8
//	duckdb: v1.4.1
//
// A value the build did not record reads "unknown".
func (d Details) Write(w io.Writer) error {
	var sb strings.Builder
	for _, kv := range [][2]string{
		{"version", d.Version},
		{"revision", d.Revision},
		{"modified", d.Modified},
		{"go", d.GoVersion},
		{"duckdb", d.DuckDB},
	} {
		sb.WriteString(kv[0] + ": " + kv[1] + "\n")
	}
	_, err := io.WriteString(w, sb.String())
	return err
}
