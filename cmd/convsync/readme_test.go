package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/schemas"
)

// sqlBlocks returns the ```sql blocks of README.md.
func sqlBlocks(t *testing.T) []string {
	t.Helper()
	buf, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)```sql\n(.*?)```")
	var out []string
	for _, m := range re.FindAllStringSubmatch(string(buf), -1) {
		out = append(out, m[1])
	}
	if len(out) < 8 {
		t.Fatalf("README has %d SQL examples, expected the documented set", len(out))
	}
	return out
}

// TestDemoAndREADMEQueries runs the demo export and a demo lookup as a user
// would, checks the demo data is worth exploring, and runs every SQL example
// of README.md against the result: each must succeed and return rows.
func TestDemoAndREADMEQueries(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "convsync.duckdb")
	pq := filepath.Join(dir, "lake")
	r := runCmd(t, "export", "--demo", "--duckdb", db, "--parquet", pq, "--history", "--snapshot-date", "2026-11-01", "--summary", "text")
	if r.code != 0 {
		t.Fatalf("demo export: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, db) || !strings.Contains(r.stdout, firstQuery) {
		t.Errorf("demo output does not say where the file is and what to query:\n%s", r.stdout)
	}
	t.Logf("demo export took %s", r.took)
	if got := testkit.Query(t, db, firstQuery); len(got) < 3 {
		t.Errorf("first query returned %d rows", len(got))
	}

	checks := []struct {
		q   string
		min int64
	}{
		{"SELECT count(*) FROM services", 3},
		{"SELECT count(*) FROM participants", 2000},
		{"SELECT count(*) FROM user_conversations", 1000},
		{"SELECT count(*) FROM participants WHERE messaging_binding_type = 'sms' AND messaging_binding_address LIKE '+%'", 1},
		{"SELECT count(*) FROM participants WHERE messaging_binding_type = 'whatsapp' AND messaging_binding_address LIKE 'whatsapp:%'", 1},
		{"SELECT count(*) FROM participants WHERE messaging_binding_projected_address IS NOT NULL", 1},
		{"SELECT count(*) FROM participants WHERE identity IS NULL AND messaging_binding_type IS NULL", 1},
		{"SELECT count(DISTINCT state) FROM conversations", 4},
	}
	for _, c := range checks {
		for _, v := range testkit.Query(t, db, c.q)[0] {
			if n, _ := v.(int64); n < c.min {
				t.Errorf("%s = %v, want at least %d", c.q, v, c.min)
			}
		}
	}

	r = runCmd(t, "lookup", "--demo", "--duckdb", db, "--identity", "john.doe.42")
	if r.code != 0 {
		t.Fatalf("demo lookup: exit %d\n%s", r.code, r.stderr)
	}
	// Every example runs through `convsync sql`, as a user without the
	// DuckDB CLI runs it: over the DuckDB file, and, for those that read
	// the Parquet datasets by path, over the Parquet root too.
	for i, q := range sqlBlocks(t) {
		q = strings.ReplaceAll(q, "'DIR/", "'"+pq+"/")
		r := sqlCmd(t, "--duckdb", db, "--format", "json", "--", q)
		if r.code != 0 {
			t.Errorf("README SQL example %d: convsync sql exit %d: %s\n%s", i+1, r.code, r.lastStderrLine(), q)
			continue
		}
		if strings.TrimSpace(r.stdout) == "" {
			t.Errorf("README SQL example %d returned no rows:\n%s", i+1, q)
		}
		if rows := testkit.Query(t, db, q); len(rows) != strings.Count(strings.TrimSpace(r.stdout), "\n")+1 {
			t.Errorf("README SQL example %d: convsync sql printed %d rows, DuckDB returns %d", i+1, strings.Count(strings.TrimSpace(r.stdout), "\n")+1, len(rows))
		}
	}
	for _, q := range []string{"SELECT count(*) AS n FROM participants", "SELECT run_id, rows_participants FROM runs WHERE command = 'export'"} {
		duck := sqlCmd(t, "--duckdb", db, "--format", "csv", q)
		lake := sqlCmd(t, "--parquet", pq, "--format", "csv", q)
		if duck.code != 0 || lake.code != 0 || duck.stdout != lake.stdout {
			t.Errorf("%s: DuckDB file says %q (exit %d), Parquet root %q (exit %d)", q, duck.stdout, duck.code, lake.stdout, lake.code)
		}
	}
}

// TestREADMEListsEveryColumn keeps the column reference in README.md in step
// with the schemas.
func TestREADMEListsEveryColumn(t *testing.T) {
	buf, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(buf)
	duckType := map[string]string{"utf8": "VARCHAR", "int64": "BIGINT", "bool": "BOOLEAN", "timestamp": "TIMESTAMPTZ"}
	for _, tab := range schemas.All {
		i := strings.Index(doc, "#### "+tab.Name+"\n")
		if i < 0 {
			t.Errorf("README has no section for table %s", tab.Name)
			continue
		}
		section := doc[i+5:]
		if j := strings.Index(section, "\n#"); j >= 0 {
			section = section[:j]
		}
		if want := "Key: (" + strings.Join(tab.Key(), ", ") + ")"; !strings.Contains(section, want) {
			t.Errorf("README table %s does not say %q", tab.Name, want)
		}
		// Each row: | column | type | PII | note |, cell by cell.
		rows := map[string][]string{}
		for _, l := range strings.Split(section, "\n") {
			if !strings.HasPrefix(l, "| ") || strings.HasPrefix(l, "| column ") || strings.HasPrefix(l, "|---") {
				continue
			}
			cells := strings.Split(strings.Trim(l, "|"), "|")
			for k := range cells {
				cells[k] = strings.TrimSpace(cells[k])
			}
			if len(cells) != 4 {
				t.Errorf("README table %s: a row without 4 cells: %s", tab.Name, l)
				continue
			}
			rows[cells[0]] = cells
		}
		for _, f := range tab.Schema.Fields() {
			cells, ok := rows[f.Name]
			if !ok {
				t.Errorf("README table %s does not list column %s", tab.Name, f.Name)
				continue
			}
			delete(rows, f.Name)
			if typ := duckType[f.Type.Name()]; cells[1] != typ {
				t.Errorf("README table %s column %s: type %q, want %q", tab.Name, f.Name, cells[1], typ)
			}
			if pii := schemas.Meta(f, schemas.MetaPII); cells[2] != pii {
				t.Errorf("README table %s column %s: PII class %q, want %q", tab.Name, f.Name, cells[2], pii)
			}
			if note := schemas.Meta(f, schemas.MetaComment); note != "" && !strings.Contains(cells[3], note) {
				t.Errorf("README table %s column %s: note %q does not say %q", tab.Name, f.Name, cells[3], note)
			}
		}
		for name := range rows {
			t.Errorf("README table %s lists a column %s the table does not have", tab.Name, name)
		}
	}
}

// sqlCmd runs `convsync sql` with args.
func sqlCmd(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"sql"}, args...), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}
