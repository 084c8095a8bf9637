package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/internal/version"
)

// sqlResult is what one `convsync ...` run printed.
type sqlResult struct {
	code           int
	stdout, stderr string
}

// convsync runs the command line args through run, as main does.
func convsync(t *testing.T, args ...string) sqlResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return sqlResult{code, out.String(), errb.String()}
}

// fixtureDDL creates the table t of the fixtures: unicode, a value with a
// comma, quotes and a newline, NULLs, timestamps, nested values.
const fixtureDDL = `
CREATE TABLE t (id INTEGER, name VARCHAR, n BIGINT, ts TIMESTAMPTZ, d DATE, f DOUBLE, amount DECIMAL(10,2),
                tags VARCHAR[], attrs STRUCT(k VARCHAR, v INTEGER), m MAP(VARCHAR, BIGINT));
INSERT INTO t VALUES
  (1, 'Zoë Ångström', 42, '2026-11-20 04:15:00+00', '2026-11-20', 1.5, 12.50, ['a', 'b'], {'k': 'x', 'v': 1}, MAP {'a': 1}),
  (2, 'a, "quoted"' || chr(10) || 'line', NULL, '2026-11-20 04:15:00.123456+00', NULL, NULL, NULL, NULL, NULL, NULL),
  (3, '日本語', -7, NULL, '1999-12-31', -0.25, -3.05, [], {'k': NULL, 'v': NULL}, MAP {});
`

func execDuckDB(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// duckDBFixture writes a DuckDB file holding t.
func duckDBFixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.duckdb")
	execDuckDB(t, path, fixtureDDL, "CHECKPOINT")
	return path
}

// parquetFixture writes a Parquet root holding t in two snapshot_date
// partitions, a dataset with its file directly in its folder, staging and
// an empty folder that are not datasets, and a run record.
func parquetFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"t/snapshot_date=2026-11-20", "t/snapshot_date=2026-11-21", "flat", ".convsync-staging-r2/t/snapshot_date=2026-11-22", "empty", "_runs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyTo := func(q, rel string) string {
		return "COPY (" + q + ") TO " + sqlString(filepath.Join(dir, rel)) + " (FORMAT parquet)"
	}
	execDuckDB(t, "", fixtureDDL,
		copyTo("SELECT * FROM t WHERE id <= 2", "t/snapshot_date=2026-11-20/part-00000.parquet"),
		copyTo("SELECT * FROM t WHERE id = 3", "t/snapshot_date=2026-11-21/part-00000.parquet"),
		copyTo("SELECT 42 AS x", "flat/part-00000.parquet"),
		copyTo("SELECT * FROM t", ".convsync-staging-r2/t/snapshot_date=2026-11-22/part-00000.parquet"),
	)
	writeFile(t, filepath.Join(dir, "_runs"), "r1.json", `{"run_id": "r1", "command": "export", "snapshot_date": "2026-11-20",
  "started_at": "2026-11-20T04:15:00.5Z", "ended_at": "2026-11-20T04:15:02.25Z", "status": "succeeded", "rows": {"t": 3}}`)
	return dir
}

const fixtureQuery = "SELECT id, name, n, ts, d FROM t ORDER BY id"

// TestSQLFormats runs one query in every format over a DuckDB file and over
// Parquet datasets: the output is the same, byte for byte.
func TestSQLFormats(t *testing.T) {
	sources := map[string][]string{
		"duckdb":  {"--duckdb", duckDBFixture(t)},
		"parquet": {"--parquet", parquetFixture(t)},
	}
	formats := []struct {
		format string
		want   string
	}{
		{"table", "" +
			"id | name              |    n | ts                          | d\n" +
			"---+-------------------+------+-----------------------------+-----------\n" +
			" 1 | Zoë Ångström      |   42 | 2026-11-20T04:15:00Z        | 2026-11-20\n" +
			" 2 | a, \"quoted\"\\nline | NULL | 2026-11-20T04:15:00.123456Z | NULL\n" +
			" 3 | 日本語            |   -7 | NULL                        | 1999-12-31\n" +
			"(3 rows)\n"},
		{"csv", "" +
			"id,name,n,ts,d\n" +
			"1,Zoë Ångström,42,2026-11-20T04:15:00Z,2026-11-20\n" +
			"2,\"a, \"\"quoted\"\"\nline\",,2026-11-20T04:15:00.123456Z,\n" +
			"3,日本語,-7,,1999-12-31\n"},
		{"json", "" +
			`{"id":1,"name":"Zoë Ångström","n":42,"ts":"2026-11-20T04:15:00Z","d":"2026-11-20"}` + "\n" +
			`{"id":2,"name":"a, \"quoted\"\nline","n":null,"ts":"2026-11-20T04:15:00.123456Z","d":null}` + "\n" +
			`{"id":3,"name":"日本語","n":-7,"ts":null,"d":"1999-12-31"}` + "\n"},
	}
	for name, src := range sources {
		for _, f := range formats {
			t.Run(name+"/"+f.format, func(t *testing.T) {
				r := convsync(t, append(append([]string{"sql"}, src...), "--format", f.format, fixtureQuery)...)
				if r.code != 0 || r.stderr != "" {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				if r.stdout != f.want {
					t.Errorf("output:\n%s\nwant:\n%s", r.stdout, f.want)
				}
			})
		}
		t.Run(name+"/default is table", func(t *testing.T) {
			r := convsync(t, append(append([]string{"sql"}, src...), fixtureQuery)...)
			if r.code != 0 || r.stdout != formats[0].want {
				t.Errorf("exit %d, output:\n%s", r.code, r.stdout)
			}
		})
	}
}

// TestSQLCSVAndJSONRoundTrip reads the csv and json outputs back with
// encoding/csv and encoding/json: every value survives, with its type.
func TestSQLCSVAndJSONRoundTrip(t *testing.T) {
	db := duckDBFixture(t)
	q := "SELECT id, name, n, ts, f, amount, tags, attrs, m FROM t ORDER BY id"

	r := convsync(t, "sql", "--duckdb", db, "--format", "csv", q)
	if r.code != 0 {
		t.Fatalf("csv: exit %d: %s", r.code, r.stderr)
	}
	recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil {
		t.Fatalf("csv output does not parse: %v\n%s", err, r.stdout)
	}
	wantCSV := [][]string{
		{"id", "name", "n", "ts", "f", "amount", "tags", "attrs", "m"},
		{"1", "Zoë Ångström", "42", "2026-11-20T04:15:00Z", "1.5", "12.50", `["a","b"]`, `{"k":"x","v":1}`, `{"a":1}`},
		{"2", "a, \"quoted\"\nline", "", "2026-11-20T04:15:00.123456Z", "", "", "", "", ""},
		{"3", "日本語", "-7", "", "-0.25", "-3.05", "[]", `{"k":null,"v":null}`, "{}"},
	}
	if got, want := recs, wantCSV; !equalRecords(got, want) {
		t.Errorf("csv records:\n%q\nwant:\n%q", got, want)
	}

	r = convsync(t, "sql", "--duckdb", db, "--format", "json", q)
	if r.code != 0 {
		t.Fatalf("json: exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("json: %d lines, want one a row:\n%s", len(lines), r.stdout)
	}
	var rows []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("json line %q: %v", l, err)
		}
		rows = append(rows, m)
	}
	if rows[0]["id"] != 1.0 || rows[0]["n"] != 42.0 || rows[0]["f"] != 1.5 || rows[0]["amount"] != 12.5 {
		t.Errorf("numbers are not JSON numbers: %v", rows[0])
	}
	if ts, err := time.Parse(time.RFC3339Nano, rows[1]["ts"].(string)); err != nil || !ts.Equal(time.Date(2026, 11, 20, 4, 15, 0, 123456000, time.UTC)) {
		t.Errorf("ts = %v (%v), want RFC 3339", rows[1]["ts"], err)
	}
	for _, k := range []string{"n", "f", "amount", "tags", "attrs", "m"} {
		if v, ok := rows[1][k]; !ok || v != nil {
			t.Errorf("row 2 %s = %#v, want null", k, v)
		}
	}
	if rows[1]["name"] != "a, \"quoted\"\nline" || rows[2]["name"] != "日本語" {
		t.Errorf("strings: %q, %q", rows[1]["name"], rows[2]["name"])
	}
	if tags, ok := rows[0]["tags"].([]any); !ok || len(tags) != 2 || tags[1] != "b" {
		t.Errorf("list = %#v", rows[0]["tags"])
	}
	if attrs, ok := rows[0]["attrs"].(map[string]any); !ok || attrs["k"] != "x" || attrs["v"] != 1.0 {
		t.Errorf("struct = %#v", rows[0]["attrs"])
	}
	if m, ok := rows[0]["m"].(map[string]any); !ok || m["a"] != 1.0 {
		t.Errorf("map = %#v", rows[0]["m"])
	}
	// Struct fields keep their declared order.
	if !strings.Contains(lines[2], `"attrs":{"k":null,"v":null}`) {
		t.Errorf("struct order or nulls: %s", lines[2])
	}
}

func equalRecords(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") || len(a[i]) != len(b[i]) {
			return false
		}
	}
	return true
}

// TestSQLValues prints one value of each kind: its text (table and csv)
// and its JSON. Where text is "=" the text must be DuckDB's own
// CAST(value AS VARCHAR).
func TestSQLValues(t *testing.T) {
	db := duckDBFixture(t)
	cases := []struct {
		expr, text, json string
	}{
		{"true", "true", "true"},
		{"42::TINYINT", "42", "42"},
		{"(-32768)::SMALLINT", "-32768", "-32768"},
		{"9223372036854775807::BIGINT", "9223372036854775807", "9223372036854775807"},
		{"18446744073709551615::UBIGINT", "18446744073709551615", "18446744073709551615"},
		{"170141183460469231731687303715884105727::HUGEINT", "170141183460469231731687303715884105727", "170141183460469231731687303715884105727"},
		{"12.5::DECIMAL(10,2)", "12.50", "12.50"},
		{"-0.05::DECIMAL(4,3)", "-0.050", "-0.050"},
		{"123456789012345678.9::DECIMAL(38,1)", "123456789012345678.9", "123456789012345678.9"},
		{"0.1::FLOAT", "0.1", "0.1"},
		{"1e300::DOUBLE", "1e+300", "1e+300"},
		{"1234567.25::DOUBLE", "1234567.25", "1234567.25"},
		{"1e-7::DOUBLE", "1e-7", "1e-7"},
		{"'nan'::DOUBLE", "NaN", `"NaN"`},
		{"'-inf'::DOUBLE", "-Infinity", `"-Infinity"`},
		{"'x'", "x", `"x"`},
		{"'tab\there'", "tab\there", `"tab\there"`},
		{"'<&>' || chr(0)", "<&>\x00", `"<&>\u0000"`},
		{"'Zoë 日本語 👍'", "Zoë 日本語 👍", `"Zoë 日本語 👍"`},
		{"'a'::ENUM('a', 'b')", "a", `"a"`},
		{"TIMESTAMPTZ '2026-11-20 04:15:00.5+02'", "2026-11-20T02:15:00.5Z", `"2026-11-20T02:15:00.5Z"`},
		{"TIMESTAMP '2026-11-20 04:15:00'", "2026-11-20T04:15:00", `"2026-11-20T04:15:00"`},
		{"TIMESTAMP_NS '2026-11-20 04:15:00.123456789'", "2026-11-20T04:15:00.123456789", `"2026-11-20T04:15:00.123456789"`},
		{"TIMESTAMP_S '2026-11-20 04:15:07'", "2026-11-20T04:15:07", `"2026-11-20T04:15:07"`},
		{"'infinity'::TIMESTAMPTZ", "infinity", `"infinity"`},
		{"'-infinity'::TIMESTAMP", "-infinity", `"-infinity"`},
		{"DATE '2026-11-20'", "2026-11-20", `"2026-11-20"`},
		{"'infinity'::DATE", "infinity", `"infinity"`},
		{"'-infinity'::DATE", "-infinity", `"-infinity"`},
		{"TIME '04:15:00.25'", "04:15:00.25", `"04:15:00.25"`},
		{"TIMETZ '04:15:00+02'", "02:15:00Z", `"02:15:00Z"`},
		{"INTERVAL '14 months 3 days 4 hours 5.5 seconds'", "=", `"1 year 2 months 3 days 04:00:05.5"`},
		{"INTERVAL '0 seconds'", "=", `"00:00:00"`},
		{"INTERVAL '-1 month -1 day -1 second'", "=", `"-1 month -1 day -00:00:01"`},
		{"INTERVAL '1000 hours 0.000001 seconds'", "=", `"1000:00:00.000001"`},
		{"INTERVAL '-10 months'", "=", `"-10 months"`},
		{"TIMESTAMPTZ '2026-11-20 05:00:00+00' - TIMESTAMPTZ '2026-11-20 04:15:00+00'", "=", `"00:45:00"`},
		{"'6ba7b810-9dad-11d1-80b4-00c04fd430c8'::UUID", "=", `"6ba7b810-9dad-11d1-80b4-00c04fd430c8"`},
		{`'\xAA\x00ab\x5Cc'::BLOB || '''"'::BLOB`, "=", `"\\xAA\\x00ab\\x5Cc\\x27\\x22"`},
		{"[1, NULL, 3]", "[1,null,3]", "[1,null,3]"},
		{"[[1], []]", "[[1],[]]", "[[1],[]]"},
		{"[1, 2]::INTEGER[2]", "[1,2]", "[1,2]"},
		{"[TIMESTAMPTZ '2026-11-20 04:15:00+00']", `["2026-11-20T04:15:00Z"]`, `["2026-11-20T04:15:00Z"]`},
		{"{'z': 1, 'a': DATE '2026-11-20', 'q\"x': [1.5::DOUBLE]}", `{"z":1,"a":"2026-11-20","q\"x":[1.5]}`, `{"z":1,"a":"2026-11-20","q\"x":[1.5]}`},
		{"MAP {'b': 2, 'a': 1}", `{"a":1,"b":2}`, `{"a":1,"b":2}`},
		{"MAP {10: 'x', 9: 'y'}", `{"9":"y","10":"x"}`, `{"9":"y","10":"x"}`},
		{"union_value(n := 2)::UNION(n INTEGER, s VARCHAR)", "2", "2"},
		{`'{"a": [1, "x"], "b": null}'::JSON`, `{"a":[1,"x"],"b":null}`, `{"a":[1,"x"],"b":null}`},
		{"NULL", "", "null"},
		{"NULL::VARCHAR[]", "", "null"},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			q := "SELECT " + tc.expr + " AS v, CAST(" + tc.expr + " AS VARCHAR) AS duck"
			r := convsync(t, "sql", "--duckdb", db, "--format", "csv", q)
			if r.code != 0 {
				t.Fatalf("csv: exit %d: %s", r.code, r.stderr)
			}
			recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
			if err != nil || len(recs) != 2 {
				t.Fatalf("csv %q: %v", r.stdout, err)
			}
			want := tc.text
			if want == "=" {
				want = recs[1][1]
			}
			if recs[1][0] != want {
				t.Errorf("text %q, want %q", recs[1][0], want)
			}
			r = convsync(t, "sql", "--duckdb", db, "--format", "json", "SELECT "+tc.expr+" AS v")
			if r.code != 0 {
				t.Fatalf("json: exit %d: %s", r.code, r.stderr)
			}
			if got, want := r.stdout, `{"v":`+tc.json+"}\n"; got != want {
				t.Errorf("json %s, want %s", got, want)
			}
			if !json.Valid([]byte(r.stdout)) {
				t.Errorf("invalid JSON %s", r.stdout)
			}
		})
	}
}

// TestSQLTableLayout: numbers right-aligned, NULL as NULL, wide characters
// counted as two columns, control characters escaped, no value cut, no
// trailing blanks, the row count last.
func TestSQLTableLayout(t *testing.T) {
	db := duckDBFixture(t)
	long := strings.Repeat("x", 300)
	cases := []struct {
		name, q, want string
	}{
		{"mixed", "SELECT * FROM (VALUES (1, '日本', NULL::DOUBLE), (1000, 'ab', 2.5)) v(num, s, f) ORDER BY num", "" +
			" num | s    |    f\n" +
			"-----+------+-----\n" +
			"   1 | 日本 | NULL\n" +
			"1000 | ab   |  2.5\n" +
			"(2 rows)\n"},
		{"one row", "SELECT 'line1' || chr(10) || 'line2' || chr(9) || 'x' AS s, 'e' || chr(27) AS e", "" +
			"s               | e\n" +
			"----------------+------\n" +
			"line1\\nline2\\tx | e\\x1b\n" +
			"(1 row)\n"},
		{"no rows", "SELECT 1 AS a WHERE false", "a\n-\n(0 rows)\n"},
		{"long value", "SELECT '" + long + "' AS v", "v\n" + strings.Repeat("-", 300) + "\n" + long + "\n(1 row)\n"},
		{"combining marks", "SELECT 'e' || chr(769) AS a, 'z' AS b", "a | b\n--+--\ne\u0301 | z\n(1 row)\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := convsync(t, "sql", "--duckdb", db, tc.q)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if r.stdout != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", r.stdout, tc.want)
			}
			for _, l := range strings.Split(r.stdout, "\n") {
				if strings.HasSuffix(l, " ") {
					t.Errorf("trailing blank in %q", l)
				}
			}
		})
	}
}

// TestSQLParquetViews: each table folder is a view with the hive partition
// column; staging and folders without Parquet files are not; the run
// records are the view runs, with timestamps and rows_<table> columns.
func TestSQLParquetViews(t *testing.T) {
	dir := parquetFixture(t)
	bracketed := filepath.Join(t.TempDir(), "lake[1]")
	if err := os.CopyFS(bracketed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, dir, q, want string
	}{
		{"views", dir, "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1", "view_name\nflat\nruns\nt\n"},
		{"partitions", dir, "SELECT snapshot_date, count(*) AS n FROM t GROUP BY ALL ORDER BY ALL", "snapshot_date,n\n2026-11-20,2\n2026-11-21,1\n"},
		{"file directly in the folder", dir, "SELECT x FROM flat", "x\n42\n"},
		{"runs", dir, "SELECT run_id, started_at, ended_at - started_at AS took, rows_t FROM runs", "run_id,started_at,took,rows_t\nr1,2026-11-20T04:15:00.5Z,00:00:01.75,3\n"},
		{"glob characters in the path", bracketed, "SELECT count(*) AS n, count(DISTINCT snapshot_date) AS dates, (SELECT rows_t FROM runs) AS runs FROM t", "n,dates,runs\n3,2,3\n"},
		{"nested values survive Parquet", dir, "SELECT tags, attrs, m FROM t ORDER BY id", "tags,attrs,m\n" +
			"\"[\"\"a\"\",\"\"b\"\"]\",\"{\"\"k\"\":\"\"x\"\",\"\"v\"\":1}\",\"{\"\"a\"\":1}\"\n,,\n[],\"{\"\"k\"\":null,\"\"v\"\":null}\",{}\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := convsync(t, "sql", "--parquet", tc.dir, "--format", "csv", tc.q)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if r.stdout != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", r.stdout, tc.want)
			}
		})
	}

	// Without run records there is no runs view.
	if err := os.RemoveAll(filepath.Join(dir, "_runs")); err != nil {
		t.Fatal(err)
	}
	r := convsync(t, "sql", "--parquet", dir, "SELECT * FROM runs")
	if r.code != 1 || !strings.Contains(r.stderr, "runs does not exist") {
		t.Errorf("runs without _runs: exit %d: %s", r.code, r.stderr)
	}
}

// TestSQLReadOnly: statements that would write fail, against the DuckDB file
// and against the Parquet datasets, and leave every file as it was, new
// files included; DuckDB itself has the file open read-only too.
func TestSQLReadOnly(t *testing.T) {
	db := duckDBFixture(t)
	pq := parquetFixture(t)
	outside := t.TempDir()
	writes := []string{
		"CREATE TABLE x (a INTEGER)",
		"CREATE VIEW v AS SELECT 1",
		"DELETE FROM t",
		"INSERT INTO t (id) VALUES (9)",
		"UPDATE t SET n = 0",
		"DROP TABLE t",
		"DROP VIEW t",
		"ALTER TABLE t ADD COLUMN z INTEGER",
		"CHECKPOINT",
		"COPY (SELECT 1) TO " + sqlString(filepath.Join(outside, "x.csv")),
		"COPY t TO " + sqlString(filepath.Join(pq, "t", "snapshot_date=2026-11-20", "part-00000.parquet")) + " (FORMAT parquet)",
		"EXPORT DATABASE " + sqlString(filepath.Join(outside, "export")),
		"ATTACH " + sqlString(filepath.Join(outside, "new.duckdb")) + " AS n",
		"EXPLAIN ANALYZE COPY (SELECT 1) TO " + sqlString(filepath.Join(outside, "y.csv")),
		"/* first */ -- and\n  explain analyse DELETE FROM t",
		"EXPLAIN (ANALYZE) DELETE FROM t",
		"SELECT 1; DELETE FROM t",
		"INSTALL httpfs",
		"SET threads = 1",
		"BEGIN TRANSACTION",
		"PREPARE p AS DELETE FROM t",
		"WITH c AS (SELECT 1) DELETE FROM t",
		"EXPLAIN EXPORT DATABASE " + sqlString(filepath.Join(outside, "export2")),
		"EXPLAIN ANALYZE WITH c AS (SELECT 1) DELETE FROM t",
	}
	reads := []string{
		"SHOW TABLES", "DESCRIBE t", "SUMMARIZE t", "FROM t", "TABLE t", "(SELECT 1)", "VALUES (1)",
		"WITH c AS (SELECT 1) SELECT * FROM c", "PRAGMA table_info('t')", "CALL pragma_version()",
		"EXPLAIN SELECT * FROM t", "EXPLAIN ANALYZE SELECT count(*) FROM t", "PIVOT t ON id IN (1, 2, 3) USING count(*)",
		"SELECT 'DELETE' AS analyze",
	}
	for _, src := range [][]string{{"--duckdb", db}, {"--parquet", pq}} {
		before := testkit.HashTree(t, filepath.Dir(db), nil)
		beforePQ := testkit.HashTree(t, pq, nil)
		for _, q := range writes {
			t.Run(src[0]+"/"+q, func(t *testing.T) {
				r := convsync(t, "sql", src[0], src[1], q)
				if r.code == 0 {
					t.Fatalf("exit 0, printed %q", r.stdout)
				}
				if lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "convsync: ") {
					t.Errorf("stderr is not one line: %q", r.stderr)
				}
			})
		}
		for _, q := range reads {
			t.Run(src[0]+"/"+q, func(t *testing.T) {
				if r := convsync(t, "sql", src[0], src[1], q); r.code != 0 {
					t.Errorf("exit %d: %s", r.code, r.stderr)
				}
			})
		}
		if after := testkit.HashTree(t, filepath.Dir(db), nil); !maps.Equal(before, after) {
			t.Errorf("%s: the DuckDB file's folder changed:\nbefore %v\nafter  %v", src[0], before, after)
		}
		if after := testkit.HashTree(t, pq, nil); !maps.Equal(beforePQ, after) {
			t.Errorf("%s: the Parquet datasets changed", src[0])
		}
		if entries, _ := os.ReadDir(outside); len(entries) > 0 {
			t.Errorf("%s: files written outside: %v", src[0], entries)
		}
	}
	// The refusals name the statement.
	r := convsync(t, "sql", "--duckdb", db, "DELETE FROM t")
	if r.code != 1 || !strings.Contains(r.stderr, "DELETE") || !strings.Contains(r.stderr, "read-only") {
		t.Errorf("DELETE: exit %d: %s", r.code, r.stderr)
	}
	// And reading still works after all of that.
	if r := convsync(t, "sql", "--duckdb", db, "--format", "csv", "SELECT count(*) AS n FROM t"); r.stdout != "n\n3\n" {
		t.Errorf("count after the refused writes: %q %s", r.stdout, r.stderr)
	}

	// DuckDB spills into a private folder, removed at the end, not beside
	// the database; it downloads no extensions; the time zone is UTC.
	for _, src := range [][]string{{"--duckdb", db}, {"--parquet", pq}} {
		r := convsync(t, "sql", src[0], src[1], "--format", "csv",
			"SELECT current_setting('temp_directory') AS tmp, current_setting('autoinstall_known_extensions') AS install, current_setting('TimeZone') AS tz")
		recs, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
		if r.code != 0 || err != nil || len(recs) != 2 {
			t.Fatalf("%s: exit %d: %s %s", src[0], r.code, r.stdout, r.stderr)
		}
		tmp := recs[1][0]
		if !strings.HasPrefix(tmp, filepath.Join(os.TempDir(), "convsync-sql-")) || recs[1][1] != "false" || recs[1][2] != "UTC" {
			t.Errorf("%s: session settings %q", src[0], recs[1])
		}
		if _, err := os.Stat(tmp); err == nil {
			t.Errorf("%s: temp folder %s left behind", src[0], tmp)
		}
	}

	// Below the statement check, DuckDB has the file open read-only.
	f := sqlFlags{DuckDB: db}
	sdb, err := f.open()
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	before := testkit.HashTree(t, filepath.Dir(db), nil)
	for _, q := range []string{"CREATE TABLE x (a INTEGER)", "DELETE FROM t", "INSERT INTO t (id) VALUES (9)"} {
		if _, err := sdb.Exec(q); err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("DuckDB ran %q on the file opened read-only: %v", q, err)
		}
	}
	sdb.Close()
	if after := testkit.HashTree(t, filepath.Dir(db), nil); !maps.Equal(before, after) {
		t.Errorf("the DuckDB file changed under DuckDB's read-only mode")
	}
}

// TestSQLErrors: bad input exits 2, a failed query 1, each with one line on
// stderr and nothing on stdout.
func TestSQLErrors(t *testing.T) {
	db := duckDBFixture(t)
	pq := parquetFixture(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.duckdb")
	notDB := writeFile(t, dir, "notes.txt", "hello, this is not a database\n")
	pqFile := filepath.Join(pq, "flat", "part-00000.parquet")
	emptyDir := filepath.Join(dir, "empty")
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no query", []string{"sql", "--duckdb", db}, 2, "needs a QUERY"},
		{"two arguments", []string{"sql", "--duckdb", db, "SELECT", "1"}, 2, "one QUERY, got 2"},
		{"empty query", []string{"sql", "--duckdb", db, "  "}, 2, "empty"},
		{"only a comment", []string{"sql", "--duckdb", db, "-- nothing\n"}, 2, "provided but not defined"},
		{"only a comment after --", []string{"sql", "--duckdb", db, "--", "-- nothing\n"}, 2, "no statement"},
		{"two statements", []string{"sql", "--duckdb", db, "SELECT 1; SELECT 2"}, 2, "several statements"},
		{"both outputs", []string{"sql", "--duckdb", db, "--parquet", pq, "SELECT 1"}, 2, "not both"},
		{"bad format", []string{"sql", "--duckdb", db, "--format", "xml", "SELECT 1"}, 2, "--format"},
		{"unknown flag", []string{"sql", "--frobnicate", "SELECT 1"}, 2, "frobnicate"},
		{"missing file", []string{"sql", "--duckdb", missing, "SELECT 1"}, 2, "no such file"},
		{"folder as --duckdb", []string{"sql", "--duckdb", dir, "SELECT 1"}, 2, "is a folder"},
		{"parquet file as --duckdb", []string{"sql", "--duckdb", pqFile, "SELECT 1"}, 2, "is a Parquet file"},
		{"other file as --duckdb", []string{"sql", "--duckdb", notDB, "SELECT 1"}, 2, "not a DuckDB database"},
		{"missing --parquet", []string{"sql", "--parquet", filepath.Join(dir, "nope"), "SELECT 1"}, 2, "no such folder"},
		{"file as --parquet", []string{"sql", "--parquet", db, "SELECT 1"}, 2, "not a folder"},
		{"no datasets", []string{"sql", "--parquet", emptyDir, "SELECT 1"}, 2, "no Parquet datasets"},
		{"bucket URL", []string{"sql", "--parquet", "s3://bucket/lake", "SELECT 1"}, 2, "local folder"},
		{"syntax error", []string{"sql", "--duckdb", db, "SELEC 1"}, 1, `query failed: Parser Error: syntax error at or near "SELEC"`},
		{"unknown table", []string{"sql", "--parquet", pq, "SELECT * FROM participants"}, 1, "query failed: Catalog Error: Table with name participants does not exist!"},
		{"unknown column", []string{"sql", "--duckdb", db, "SELECT nope FROM t"}, 1, `Referenced column "nope" not found`},
		{"runtime error", []string{"sql", "--duckdb", db, "SELECT CAST(name AS INTEGER) FROM t"}, 1, "Conversion Error"},
		{"type the driver cannot read", []string{"sql", "--duckdb", db, "SELECT 1::UHUGEINT AS big"}, 1, `column "big" is of type UHUGEINT`},
		{"version with an argument", []string{"version", "now"}, 2, "no arguments"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := convsync(t, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "convsync: ") || !strings.Contains(lines[0], tc.want) {
				t.Errorf("stderr %q, want one line with %q", r.stderr, tc.want)
			}
			if strings.Contains(r.stderr, "LINE 1") || strings.Contains(r.stderr, "^") {
				t.Errorf("stderr carries DuckDB's caret block: %q", r.stderr)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("sql created the missing database")
	}
}

// TestSQLArguments: flags after the query, "--" before a query that starts
// with "-", and --duckdb convsync.duckdb by default, as export.
func TestSQLArguments(t *testing.T) {
	db := duckDBFixture(t)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"flags after the query", []string{"--duckdb", db, "SELECT count(*) AS n FROM t", "--format", "json"}, `{"n":3}` + "\n"},
		{"query after --", []string{"--duckdb", db, "--format", "csv", "--", "-- count\nSELECT count(*) AS n FROM t"}, "n\n3\n"},
		{"flags around the query", []string{"--format", "csv", "SELECT 2 AS n", "--duckdb", db}, "n\n2\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := convsync(t, append([]string{"sql"}, tc.args...)...)
			if r.code != 0 || r.stdout != tc.want {
				t.Errorf("exit %d, stdout %q, want %q (stderr %q)", r.code, r.stdout, tc.want, r.stderr)
			}
		})
	}

	t.Chdir(filepath.Dir(db))
	if r := convsync(t, "sql", "--format", "csv", "SELECT 1 AS n"); r.code != 2 || !strings.Contains(r.stderr, "convsync.duckdb: no such file") {
		t.Errorf("default without ./convsync.duckdb: exit %d: %s", r.code, r.stderr)
	}
	if err := os.Rename(db, "convsync.duckdb"); err != nil {
		t.Fatal(err)
	}
	if r := convsync(t, "sql", "--format", "csv", "SELECT count(*) AS n FROM t"); r.code != 0 || r.stdout != "n\n3\n" {
		t.Errorf("default ./convsync.duckdb: exit %d, %q %s", r.code, r.stdout, r.stderr)
	}
}

// TestSQLOverDemoExport exports the demo account into DuckDB and Parquet
// and reads every table back through `convsync sql` from both: the rows
// are the same. README's example queries run through it too.
func TestSQLOverDemoExport(t *testing.T) {
	dir := t.TempDir()
	db, pq := filepath.Join(dir, "convsync.duckdb"), filepath.Join(dir, "lake")
	var out, errb bytes.Buffer
	if code := run([]string{"export", "--demo", "--duckdb", db, "--parquet", pq, "--snapshot-date", "2026-11-20", "--progress", "off"}, &out, &errb); code != 0 {
		t.Fatalf("demo export: exit %d\n%s", code, errb.String())
	}
	before := testkit.HashTree(t, dir, nil)

	for _, table := range []string{"services", "users", "user_conversations", "conversations", "participants"} {
		t.Run(table, func(t *testing.T) {
			fromDB := convsync(t, "sql", "--duckdb", db, "--format", "csv", "SELECT * FROM "+table+" ORDER BY ALL")
			fromPQ := convsync(t, "sql", "--parquet", pq, "--format", "csv", "SELECT * EXCLUDE (snapshot_date) FROM "+table+" ORDER BY ALL")
			if fromDB.code != 0 || fromPQ.code != 0 {
				t.Fatalf("exit %d / %d: %s %s", fromDB.code, fromPQ.code, fromDB.stderr, fromPQ.stderr)
			}
			if fromDB.stdout != fromPQ.stdout {
				t.Errorf("DuckDB and Parquet disagree on %s", table)
			}
			recs, err := csv.NewReader(strings.NewReader(fromDB.stdout)).ReadAll()
			if err != nil || len(recs) < 2 {
				t.Fatalf("csv: %d records, %v", len(recs), err)
			}
			for _, format := range []string{"table", "json"} {
				r := convsync(t, "sql", "--parquet", pq, "--format", format, "SELECT * FROM "+table+" LIMIT 200")
				if r.code != 0 {
					t.Fatalf("%s: exit %d: %s", format, r.code, r.stderr)
				}
				if format == "json" {
					for _, l := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
						if !json.Valid([]byte(l)) {
							t.Fatalf("invalid JSON line %q", l)
						}
					}
				}
			}
		})
	}

	runsQ := "SELECT run_id, command, snapshot_date, started_at, ended_at, status, requests, retries, parents_skipped, rows_participants FROM runs"
	fromDB := convsync(t, "sql", "--duckdb", db, "--format", "csv", runsQ)
	fromPQ := convsync(t, "sql", "--parquet", pq, "--format", "csv", runsQ)
	if fromDB.code != 0 || fromPQ.code != 0 || fromDB.stdout != fromPQ.stdout {
		t.Errorf("runs differ:\nDuckDB  %s%s\nParquet %s%s", fromDB.stdout, fromDB.stderr, fromPQ.stdout, fromPQ.stderr)
	}

	for i, q := range sqlBlocks(t) {
		q = strings.ReplaceAll(q, "'DIR/", "'"+pq+"/")
		r := convsync(t, "sql", "--duckdb", db, "--format", "csv", q)
		if r.code != 0 && !strings.Contains(q, "participant_conversations") && !strings.Contains(q, "participants_history") {
			t.Errorf("README SQL example %d: exit %d: %s", i+1, r.code, r.stderr)
		}
	}
	if after := testkit.HashTree(t, dir, nil); !maps.Equal(before, after) {
		t.Error("convsync sql changed the outputs")
	}
}

// TestVersionCommand: `convsync version` and `convsync --version` print the
// same five lines; the DuckDB version is the embedded library's.
func TestVersionCommand(t *testing.T) {
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var lib string
	if err := db.QueryRow("SELECT library_version FROM pragma_version()").Scan(&lib); err != nil {
		t.Fatal(err)
	}
	want, err := version.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var outputs []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := convsync(t, args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		outputs = append(outputs, r.stdout)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		keys := []string{"version", "revision", "modified", "go", "duckdb"}
		if len(lines) != len(keys) {
			t.Fatalf("%v printed %d lines:\n%s", args, len(lines), r.stdout)
		}
		patterns := map[string]string{
			"version":  `^(\(devel\)( [0-9a-f]{7,12}(\+dirty)?)?|v\d+\.\d+\.\d+\S*)$`,
			"revision": `^([0-9a-f]{7,64}|unknown)$`,
			"modified": `^(true|false|unknown)$`,
			"go":       `^go\d+\.\d+`,
			"duckdb":   `^v\d+\.\d+\.\d+$`,
		}
		got := map[string]string{}
		for i, l := range lines {
			k, v, ok := strings.Cut(l, ": ")
			if !ok || k != keys[i] {
				t.Errorf("line %d = %q, want %q: ...", i+1, l, keys[i])
				continue
			}
			got[k] = v
			if !regexp.MustCompile(patterns[k]).MatchString(v) {
				t.Errorf("%s = %q, want %s", k, v, patterns[k])
			}
		}
		if got["duckdb"] != lib {
			t.Errorf("duckdb = %q, pragma_version says %q", got["duckdb"], lib)
		}
		if got["version"] != want.Version || got["revision"] != want.Revision || got["go"] != want.GoVersion {
			t.Errorf("printed %v, version.Info says %+v", got, want)
		}
	}
	if outputs[0] != outputs[1] {
		t.Errorf("version and --version differ:\n%s\n%s", outputs[0], outputs[1])
	}
}

// TestParseSQLType reads the type names go-duckdb reports.
func TestParseSQLType(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{"INTEGER", "INTEGER"},
		{"DECIMAL(10,2)", "DECIMAL"},
		{"VARCHAR[]", "LIST<VARCHAR>"},
		{"DECIMAL(4,1)[][2]", "ARRAY<LIST<DECIMAL>>"},
		{`STRUCT("a b" INTEGER, "q""x" DATE[])`, `STRUCT{a b:INTEGER,q"x:LIST<DATE>}`},
		{"MAP(VARCHAR, STRUCT(\"t\" TIMESTAMPTZ))", "MAP<VARCHAR,STRUCT{t:TIMESTAMPTZ}>"},
		{`UNION("n" INTEGER, "s" VARCHAR)`, "UNION{n:INTEGER,s:VARCHAR}"},
		{"", "?"},
		{"STRUCT(a INTEGER)", "?"},
		{"MAP(VARCHAR)", "?"},
		{"INTEGER[", "?"},
	}
	var show func(*sqlType) string
	show = func(t *sqlType) string {
		switch t.name {
		case "LIST", "ARRAY":
			return t.name + "<" + show(t.elem) + ">"
		case "MAP":
			return "MAP<" + show(t.key) + "," + show(t.value) + ">"
		case "STRUCT", "UNION":
			var fs []string
			for _, f := range t.fields {
				fs = append(fs, f.name+":"+show(f.typ))
			}
			return t.name + "{" + strings.Join(fs, ",") + "}"
		}
		return t.name
	}
	for _, tc := range cases {
		if got := show(parseSQLType(tc.in)); got != tc.want {
			t.Errorf("parseSQLType(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
