package sink_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	_ "github.com/marcboeker/go-duckdb/v2"

	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
)

var (
	day1 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	day2 = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	base = time.Date(2026, 11, 21, 13, 14, 15, 123456000, time.UTC)
)

// value is the deterministic test value of column col of row i of a
// table in generation gen: nil (NULL), string, int64, bool or time.Time.
// The first column that is part of the key is never NULL and sorts like i.
func value(t schemas.Table, gen, i, col int) any {
	f := t.Schema.Field(col)
	if schemas.Meta(f, schemas.MetaKey) == "" && (i+col)%5 == 0 {
		return nil
	}
	switch f.Type.ID() {
	case arrow.STRING:
		switch {
		case schemas.Meta(f, schemas.MetaKey) != "":
			return fmt.Sprintf("K%07d", i)
		case i%97 == 3:
			return strings.Repeat("long ✓ ", 20000) + fmt.Sprint(i) // ~160 KB
		case i%3 == 0:
			return fmt.Sprintf("Zoë 日本語 🙂 'quoted' \"dq\" %s %d/%d", f.Name, gen, i)
		default:
			return fmt.Sprintf("%s-%d-%d", f.Name, gen, i)
		}
	case arrow.INT64:
		return int64(i*1000+col) - 5000 + int64(gen)
	case arrow.BOOL:
		return (i+gen)%2 == 0
	case arrow.TIMESTAMP:
		return base.Add(time.Duration(i)*time.Hour + time.Duration(col)*time.Microsecond + time.Duration(gen)*time.Minute)
	}
	panic("unexpected type " + f.Type.String())
}

// record builds rows [from, to) of t in generation gen.
func record(t *testing.T, mem memory.Allocator, tbl schemas.Table, gen, from, to int) arrow.Record {
	t.Helper()
	b := array.NewRecordBuilder(mem, tbl.Schema)
	defer b.Release()
	for i := from; i < to; i++ {
		for c := range tbl.Schema.NumFields() {
			fb := b.Field(c)
			switch v := value(tbl, gen, i, c).(type) {
			case nil:
				fb.AppendNull()
			case string:
				fb.(*array.StringBuilder).Append(v)
			case int64:
				fb.(*array.Int64Builder).Append(v)
			case bool:
				fb.(*array.BooleanBuilder).Append(v)
			case time.Time:
				fb.(*array.TimestampBuilder).Append(arrow.Timestamp(v.UnixMicro()))
			}
		}
	}
	return b.NewRecord()
}

// write writes rows [0, n) of each table in batches of batch rows, one
// goroutine per table, as a run does.
func write(t *testing.T, mem memory.Allocator, s sink.Sink, tables []schemas.Table, rows map[string]int, gen, batch int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(tables))
	for _, tbl := range tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := rows[tbl.Name]
			for from := 0; from < n; from += batch {
				rec := record(t, mem, tbl, gen, from, min(from+batch, n))
				err := s.Write(context.Background(), tbl.Name, rec)
				rec.Release()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func run(id, cmd string, date time.Time, rows map[string]int) sink.Run {
	r := sink.Run{
		ID: id, Command: cmd, SnapshotDate: date,
		Started: base, Ended: base.Add(90 * time.Second),
		Status: "succeeded", PII: "keep", Rows: map[string]int64{},
		Requests: 42, Retries: 2, ParentsSkipped: 1, Services: []string{"IS1", "IS2"},
	}
	for k, v := range rows {
		r.Rows[k] = int64(v)
	}
	return r
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// checkRows reads every row of from (a table name or a table function)
// through DuckDB and compares it with the generated values.
func checkRows(t *testing.T, db *sql.DB, tbl schemas.Table, from string, gen, n int) {
	t.Helper()
	names := make([]string, tbl.Schema.NumFields())
	for i, f := range tbl.Schema.Fields() {
		names[i] = `"` + f.Name + `"`
	}
	rows, err := db.Query(fmt.Sprintf("SELECT %s FROM %s ORDER BY %q", strings.Join(names, ", "), from, tbl.Key[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := 0
	for ; rows.Next(); got++ {
		vals := make([]any, len(names))
		ptrs := make([]any, len(names))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for c, v := range vals {
			want := value(tbl, gen, got, c)
			if ts, ok := v.(time.Time); ok {
				v = ts.UTC()
			}
			if !reflect.DeepEqual(v, want) {
				t.Fatalf("%s row %d column %s = %.80v, want %.80v", from, got, names[c], v, want)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("%s: %d rows, want %d", from, got, n)
	}
}

func glob(dir, table string) string {
	return fmt.Sprintf("read_parquet('%s', hive_partitioning = true)",
		strings.ReplaceAll(filepath.Join(dir, table, "**", "*.parquet"), "'", "''"))
}

func count(t *testing.T, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestExportThroughBothSinks(t *testing.T) {
	tables := []schemas.Table{schemas.Participants, schemas.Users}
	cases := []struct {
		name  string
		rows  map[string]int
		batch int
	}{
		{"several batches", map[string]int{"participants": 1000, "users": 25}, 97},
		{"one batch", map[string]int{"participants": 10, "users": 1}, 1000},
		{"zero-row table", map[string]int{"participants": 0, "users": 3}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			root := filepath.Join(t.TempDir(), `it's "odd"`) // quotes in paths
			dir, dbPath := filepath.Join(root, "parquet"), filepath.Join(root, "convsync.duckdb")
			const id = "20261122T041500Z-3f9a1c"

			pq, err := sink.NewParquet(dir, tables, id, day1, sink.WithAllocator(mem))
			if err != nil {
				t.Fatal(err)
			}
			dd, err := sink.NewDuckDB(dbPath, tables, id, day1, sink.WithAllocator(mem))
			if err != nil {
				t.Fatal(err)
			}
			s := sink.Multi(pq, dd)
			write(t, mem, s, tables, tc.rows, 1, tc.batch)
			r := run(id, "export", day1, tc.rows)
			delete(r.Rows, "users") // the sink fills in what the caller leaves out
			if err := s.Commit(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			assertNoStaging(t, root)

			db := openDB(t, dbPath)
			for _, tbl := range tables {
				checkRows(t, db, tbl, tbl.Name, 1, tc.rows[tbl.Name])
				checkRows(t, db, tbl, glob(dir, tbl.Name), 1, tc.rows[tbl.Name])
				checkTypes(t, db, tbl)
				if n := count(t, db, fmt.Sprintf("SELECT count(*) FROM %s WHERE snapshot_date <> DATE '2026-11-22'", glob(dir, tbl.Name))); n != 0 {
					t.Errorf("%s: %d rows with another snapshot_date", tbl.Name, n)
				}
				checkParquetFile(t, filepath.Join(dir, tbl.Name, "snapshot_date=2026-11-22", "part-00000.parquet"), tbl, tc.rows[tbl.Name])
			}
			checkComments(t, db, tables)
			checkRunsRow(t, db, id, tc.rows)
			checkRunJSON(t, dir, id, tc.rows)
		})
	}
}

func checkTypes(t *testing.T, db *sql.DB, tbl schemas.Table) {
	t.Helper()
	rows, err := db.Query("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", tbl.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		f := tbl.Schema.Field(i)
		want := map[arrow.Type]string{arrow.STRING: "VARCHAR", arrow.INT64: "BIGINT", arrow.BOOL: "BOOLEAN", arrow.TIMESTAMP: "TIMESTAMP WITH TIME ZONE"}[f.Type.ID()]
		if name != f.Name || typ != want {
			t.Errorf("%s column %d: %s %s, want %s %s", tbl.Name, i, name, typ, f.Name, want)
		}
	}
	if i != tbl.Schema.NumFields() {
		t.Errorf("%s has %d columns, want %d", tbl.Name, i, tbl.Schema.NumFields())
	}
}

// checkComments lists every PII column with the auditor's query.
func checkComments(t *testing.T, db *sql.DB, tables []schemas.Table) {
	t.Helper()
	var want []string
	for _, tbl := range tables {
		for _, f := range tbl.Schema.Fields() {
			if c := schemas.Meta(f, schemas.MetaPII); c != "" {
				want = append(want, tbl.Name+"."+f.Name+"="+sink.ColumnComment(f))
				if !strings.HasPrefix(sink.ColumnComment(f), "pii:"+c) {
					t.Errorf("comment of %s.%s = %q", tbl.Name, f.Name, sink.ColumnComment(f))
				}
			}
		}
	}
	rows, err := db.Query("SELECT table_name, column_name, comment FROM duckdb_columns() WHERE comment LIKE 'pii:%'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var tn, cn, c string
		if err := rows.Scan(&tn, &cn, &c); err != nil {
			t.Fatal(err)
		}
		got = append(got, tn+"."+cn+"="+c)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("PII columns:\n got %q\nwant %q", got, want)
	}
	var c string
	if err := db.QueryRow("SELECT comment FROM duckdb_columns() WHERE table_name = 'participants' AND column_name = 'run_id'").Scan(&c); err != nil || !strings.Contains(c, "runs table") {
		t.Errorf("run_id comment %q, %v", c, err)
	}
	if err := db.QueryRow("SELECT comment FROM duckdb_tables() WHERE table_name = 'participants'").Scan(&c); err != nil || !strings.Contains(c, "2026-11-22") {
		t.Errorf("table comment %q, %v", c, err)
	}
}

func checkRunsRow(t *testing.T, db *sql.DB, id string, rows map[string]int) {
	t.Helper()
	var (
		cmd, status, pii, date string
		started, ended         time.Time
		req, parts, partsCol   int64
		users                  sql.NullInt64
		services               string
	)
	err := db.QueryRow(`SELECT command, status, pii, snapshot_date::VARCHAR, started_at, ended_at, requests,
		rows['participants'], rows_participants, rows_users, array_to_string(services, ',')
		FROM runs WHERE run_id = ?`, id).Scan(&cmd, &status, &pii, &date, &started, &ended, &req, &parts, &partsCol, &users, &services)
	if err != nil {
		t.Fatal(err)
	}
	if cmd != "export" || status != "succeeded" || pii != "keep" || date != "2026-11-22" || req != 42 || services != "IS1,IS2" {
		t.Errorf("runs row: %q %q %q %q %d %q", cmd, status, pii, date, req, services)
	}
	if !started.Equal(base) || !ended.Equal(base.Add(90*time.Second)) {
		t.Errorf("runs row times: %v %v", started, ended)
	}
	if parts != int64(rows["participants"]) || partsCol != parts || users.Int64 != int64(rows["users"]) {
		t.Errorf("runs row counts: %d %d %v, want %v", parts, partsCol, users, rows)
	}
}

func checkRunJSON(t *testing.T, dir, id string, rows map[string]int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "_runs", id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		RunID          string           `json:"run_id"`
		SnapshotDate   string           `json:"snapshot_date"`
		StartedAt      time.Time        `json:"started_at"`
		Rows           map[string]int64 `json:"rows"`
		ParentsSkipped int64            `json:"parents_skipped"`
		Services       []string         `json:"services"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	for k, v := range rows {
		want[k] = int64(v)
	}
	if rec.RunID != id || rec.SnapshotDate != "2026-11-22" || !rec.StartedAt.Equal(base) || rec.ParentsSkipped != 1 ||
		!reflect.DeepEqual(rec.Rows, want) || len(rec.Services) != 2 {
		t.Errorf("run record: %s", b)
	}
}

// checkParquetFile checks a published file through the Parquet reader.
func checkParquetFile(t *testing.T, path string, tbl schemas.Table, rows int) {
	t.Helper()
	rdr, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	md := rdr.MetaData()
	if rep := md.Schema.Root().RepetitionType(); rep != parquet.Repetitions.Required {
		t.Errorf("%s: root repetition %s, want REQUIRED", tbl.Name, rep)
	}
	if rdr.NumRows() != int64(rows) {
		t.Errorf("%s: %d rows, want %d", tbl.Name, rdr.NumRows(), rows)
	}
	for g := range rdr.NumRowGroups() {
		for c := range md.RowGroup(g).NumColumns() {
			cc, err := md.RowGroup(g).ColumnChunk(c)
			if err != nil {
				t.Fatal(err)
			}
			if cc.Compression() != compress.Codecs.Zstd {
				t.Fatalf("%s: row group %d column %d compressed with %s", tbl.Name, g, c, cc.Compression())
			}
		}
	}
	if v := md.KeyValueMetadata().FindValue(sink.KVPII); v == nil || !strings.Contains(*v, `"identity":"standard"`) {
		t.Errorf("%s: %s = %v", tbl.Name, sink.KVPII, v)
	}
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := fr.Schema()
	if err != nil {
		t.Fatal(err)
	}
	if sc.HasField("snapshot_date") {
		t.Errorf("%s: file has a snapshot_date column", tbl.Name)
	}
	for _, want := range tbl.Schema.Fields() {
		got, ok := sc.FieldsByName(want.Name)
		if !ok {
			t.Fatalf("%s: no column %s", tbl.Name, want.Name)
		}
		for _, k := range []string{schemas.MetaPII, schemas.MetaPIIOrigin, schemas.MetaSource, schemas.MetaComment} {
			if g, w := schemas.Meta(got[0], k), schemas.Meta(want, k); g != w {
				t.Errorf("%s.%s: %s = %q, want %q", tbl.Name, want.Name, k, g, w)
			}
		}
	}
}

func TestRowGroups(t *testing.T) {
	tbl := schemas.Users
	cases := []struct {
		rows, batch, limit, groups int
	}{
		{rows: 0, batch: 10, limit: 100, groups: 0},
		{rows: 100, batch: 7, limit: 100, groups: 1},
		{rows: 99, batch: 100, limit: 100, groups: 1},
		{rows: 101, batch: 7, limit: 100, groups: 2},
		{rows: 250, batch: 30, limit: 100, groups: 3},
		{rows: 250, batch: 250, limit: 100, groups: 3},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d rows by %d, limit %d", tc.rows, tc.batch, tc.limit), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			dir := t.TempDir()
			pq, err := sink.NewParquet(dir, []schemas.Table{tbl}, "r1", day1, sink.WithRowGroupRows(int64(tc.limit)), sink.WithAllocator(mem))
			if err != nil {
				t.Fatal(err)
			}
			defer pq.Close()
			write(t, mem, pq, []schemas.Table{tbl}, map[string]int{tbl.Name: tc.rows}, 1, tc.batch)
			if err := pq.Commit(context.Background(), run("r1", "export", day1, nil)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tbl.Name, "snapshot_date=2026-11-22", "part-00000.parquet")
			rdr, err := file.OpenParquetFile(path, false)
			if err != nil {
				t.Fatal(err)
			}
			defer rdr.Close()
			if got := rdr.NumRowGroups(); got != tc.groups {
				t.Errorf("%d row groups, want %d", got, tc.groups)
			}
			for g := range rdr.NumRowGroups() {
				if n := rdr.MetaData().RowGroup(g).NumRows(); n > int64(tc.limit) || n == 0 {
					t.Errorf("row group %d has %d rows", g, n)
				}
			}
			checkRows(t, openDB(t, ""), tbl, glob(dir, tbl.Name), 1, tc.rows)
		})
	}
}

// TestRowGroupBytes checks that a row group is cut at the byte limit
// before the row limit.
func TestRowGroupBytes(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	tbl := schemas.Users
	dir := t.TempDir()
	pq, err := sink.NewParquet(dir, []schemas.Table{tbl}, "r1", day1, sink.WithRowGroupBytes(1), sink.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer pq.Close()
	write(t, mem, pq, []schemas.Table{tbl}, map[string]int{tbl.Name: 30}, 1, 10)
	if err := pq.Commit(context.Background(), run("r1", "export", day1, nil)); err != nil {
		t.Fatal(err)
	}
	rdr, err := file.OpenParquetFile(filepath.Join(dir, tbl.Name, "snapshot_date=2026-11-22", "part-00000.parquet"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Close()
	if got := rdr.NumRowGroups(); got != 3 {
		t.Errorf("%d row groups, want 3", got)
	}
}

// exportRun writes and commits one run of tables into both sinks.
func exportRun(t *testing.T, root, id, cmd string, date time.Time, tables []schemas.Table, rows map[string]int, gen int) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	pq, err := sink.NewParquet(filepath.Join(root, "parquet"), tables, id, date)
	if err != nil {
		t.Fatal(err)
	}
	dd, err := sink.NewDuckDB(filepath.Join(root, "db.duckdb"), tables, id, date)
	if err != nil {
		t.Fatal(err)
	}
	s := sink.Multi(dd, pq)
	defer s.Close()
	write(t, mem, s, tables, rows, gen, 64)
	if err := s.Commit(context.Background(), run(id, cmd, date, rows)); err != nil {
		t.Fatal(err)
	}
}

func TestReruns(t *testing.T) {
	tables := []schemas.Table{schemas.Participants, schemas.Users}
	root := t.TempDir()
	dir := filepath.Join(root, "parquet")
	exportRun(t, root, "run1", "export", day1, tables, map[string]int{"participants": 300, "users": 5}, 1)
	exportRun(t, root, "run2", "export", day1, tables, map[string]int{"participants": 120, "users": 7}, 2)

	db := openDB(t, "")
	// Same date: the partition is replaced.
	checkRows(t, db, schemas.Participants, glob(dir, "participants"), 2, 120)
	checkRows(t, db, schemas.Users, glob(dir, "users"), 2, 7)

	exportRun(t, root, "run3", "export", day2, tables, map[string]int{"participants": 50, "users": 0}, 3)
	// Another date: a partition is added, the first stays.
	for _, tc := range []struct {
		date  string
		table string
		rows  int64
	}{
		{"2026-11-22", "participants", 120},
		{"2026-11-23", "participants", 50},
		{"2026-11-22", "users", 7},
		{"2026-11-23", "users", 0},
	} {
		q := fmt.Sprintf("SELECT count(*) FROM %s WHERE snapshot_date = DATE '%s'", glob(dir, tc.table), tc.date)
		if n := count(t, db, q); n != tc.rows {
			t.Errorf("%s %s: %d rows, want %d", tc.table, tc.date, n, tc.rows)
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "participants"))
	if err != nil || len(ents) != 2 {
		t.Errorf("participants folder holds %v (%v), want two partitions", ents, err)
	}

	ddb := openDB(t, filepath.Join(root, "db.duckdb"))
	checkRows(t, ddb, schemas.Participants, "participants", 3, 50)
	checkRows(t, ddb, schemas.Users, "users", 3, 0)
	if n := count(t, ddb, "SELECT count(*) FROM runs"); n != 3 {
		t.Errorf("%d runs, want 3", n)
	}
	assertNoStaging(t, root)
}

func TestLookupLeavesExportTables(t *testing.T) {
	root := t.TempDir()
	exportRun(t, root, "run1", "export", day1, schemas.Export, map[string]int{"participants": 30, "users": 4, "services": 2}, 1)
	exportRun(t, root, "run2", "lookup", day1, schemas.Lookup, map[string]int{"participant_conversations": 9}, 2)

	db := openDB(t, filepath.Join(root, "db.duckdb"))
	checkRows(t, db, schemas.Participants, "participants", 1, 30)
	checkRows(t, db, schemas.ParticipantConversations, "participant_conversations", 2, 9)
	checkRows(t, db, schemas.ParticipantConversations, glob(filepath.Join(root, "parquet"), "participant_conversations"), 2, 9)
	checkRows(t, db, schemas.Participants, glob(filepath.Join(root, "parquet"), "participants"), 1, 30)
	var cmd string
	var pc int64
	if err := db.QueryRow("SELECT command, rows_participant_conversations FROM runs WHERE run_id = 'run2'").Scan(&cmd, &pc); err != nil || cmd != "lookup" || pc != 9 {
		t.Errorf("lookup run row: %q %d %v", cmd, pc, err)
	}
	checkComments(t, db, append(append([]schemas.Table{}, schemas.Export...), schemas.Lookup...))
}

// TestFailedRunChangesNothing: a run closed without Commit after a good
// run leaves every output file byte-for-byte as it was.
func TestFailedRunChangesNothing(t *testing.T) {
	tables := []schemas.Table{schemas.Participants, schemas.Users}
	cases := []struct {
		name string
		date time.Time
		fail func(t *testing.T, s sink.Sink)
	}{
		{"close without commit", day1, func(t *testing.T, s sink.Sink) {}},
		{"other date", day2, func(t *testing.T, s sink.Sink) {}},
		{"write after cancel", day1, func(t *testing.T, s sink.Sink) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			rec := record(t, memory.DefaultAllocator, schemas.Users, 9, 0, 3)
			defer rec.Release()
			if err := s.Write(ctx, "users", rec); err == nil {
				t.Error("write with cancelled context succeeded")
			}
		}},
		{"unknown table", day1, func(t *testing.T, s sink.Sink) {
			rec := record(t, memory.DefaultAllocator, schemas.Users, 9, 0, 3)
			defer rec.Release()
			if err := s.Write(context.Background(), "nope", rec); err == nil {
				t.Error("write to unknown table succeeded")
			}
			if err := s.Write(context.Background(), "participants", rec); err == nil {
				t.Error("write of users record to participants succeeded")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			exportRun(t, root, "good", "export", day1, tables, map[string]int{"participants": 200, "users": 3}, 1)
			before := hashTree(t, root)

			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			pq, err := sink.NewParquet(filepath.Join(root, "parquet"), tables, "bad", tc.date, sink.WithAllocator(mem))
			if err != nil {
				t.Fatal(err)
			}
			dd, err := sink.NewDuckDB(filepath.Join(root, "db.duckdb"), tables, "bad", tc.date, sink.WithAllocator(mem))
			if err != nil {
				t.Fatal(err)
			}
			s := sink.Multi(pq, dd)
			write(t, mem, s, tables, map[string]int{"participants": 150, "users": 9}, 2, 40)
			tc.fail(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(context.Background(), run("bad", "export", tc.date, nil)); err == nil {
				t.Error("commit after close succeeded")
			}
			if after := hashTree(t, root); !reflect.DeepEqual(before, after) {
				t.Errorf("outputs changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestFailedDuckDBCommitPublishesNoParquet: Multi commits DuckDB first and
// stops when it fails.
func TestFailedDuckDBCommitPublishesNoParquet(t *testing.T) {
	root := t.TempDir()
	tables := []schemas.Table{schemas.Users}
	dbPath := filepath.Join(root, "db.duckdb")
	if err := os.WriteFile(dbPath, []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	pq, err := sink.NewParquet(filepath.Join(root, "parquet"), tables, "r1", day1)
	if err != nil {
		t.Fatal(err)
	}
	dd, err := sink.NewDuckDB(dbPath, tables, "r1", day1)
	if err != nil {
		t.Fatal(err)
	}
	s := sink.Multi(pq, dd)
	write(t, memory.DefaultAllocator, s, tables, map[string]int{"users": 5}, 1, 2)
	if err := s.Commit(context.Background(), run("r1", "export", day1, nil)); err == nil {
		t.Fatal("commit into a corrupt database succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "parquet", "users")); !os.IsNotExist(err) {
		t.Errorf("parquet dataset published after failed DuckDB commit: %v", err)
	}
	assertNoStaging(t, root)
	if b, _ := os.ReadFile(dbPath); string(b) != "not a database" {
		t.Error("database file changed")
	}
}

func hashTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			out[rel+"/"] = "dir"
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertNoStaging(t *testing.T, root string) {
	t.Helper()
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "staging") {
			t.Errorf("staging left behind: %s", path)
		}
		if err == nil && strings.HasSuffix(d.Name(), ".wal") {
			t.Errorf("WAL left behind: %s", path)
		}
		return nil
	})
}
