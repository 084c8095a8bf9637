package stage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"

	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/internal/sinktest"
	"github.com/convsync/convsync/sink/stage"
)

func write(t *testing.T, mem memory.Allocator, s *stage.Stage, tbl schemas.Table, gen, from, to, batch int) {
	t.Helper()
	for i := from; i < to; i += batch {
		rec := sinktest.Record(mem, tbl, gen, i, min(i+batch, to))
		err := s.Write(context.Background(), tbl.Name, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func manifest(id string) stage.Manifest {
	return stage.Manifest{RunID: id, Command: "export", Outputs: []string{"/x"}, Fingerprint: "fp"}
}

func TestRowGroups(t *testing.T) {
	tbl := schemas.Users
	cases := []struct {
		rows, batch, limit, groups int
		bytes                      int64
	}{
		{rows: 0, batch: 10, limit: 100, groups: 0},
		{rows: 100, batch: 7, limit: 100, groups: 1},
		{rows: 99, batch: 100, limit: 100, groups: 1},
		{rows: 101, batch: 7, limit: 100, groups: 2},
		{rows: 250, batch: 30, limit: 100, groups: 3},
		{rows: 250, batch: 250, limit: 100, groups: 3},
		{rows: 30, batch: 10, limit: 100, groups: 3, bytes: 1}, // cut by bytes before rows
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%d rows by %d, limit %d rows %d bytes", tc.rows, tc.batch, tc.limit, tc.bytes), func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			dir := filepath.Join(t.TempDir(), "staging")
			s, err := stage.Create(dir, []schemas.Table{tbl}, manifest("r1"),
				stage.Options{RowGroupRows: int64(tc.limit), RowGroupBytes: tc.bytes, Allocator: mem})
			if err != nil {
				t.Fatal(err)
			}
			write(t, mem, s, tbl, 1, 0, tc.rows, tc.batch)
			files, err := s.Finish(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if files[tbl.Name].Rows != int64(tc.rows) {
				t.Errorf("Finish reports %d rows, want %d", files[tbl.Name].Rows, tc.rows)
			}
			rdr, err := file.OpenParquetFile(files[tbl.Name].Path, false)
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
			kv := rdr.MetaData().KeyValueMetadata()
			if v := kv.FindValue(stage.KVTable); v == nil || *v != tbl.Name {
				t.Errorf("file metadata %s = %v", stage.KVTable, v)
			}
			sinktest.Check(t, sinktest.OpenDB(t, ""), tbl, fmt.Sprintf("read_parquet('%s')", files[tbl.Name].Path), 1, tc.rows)
		})
	}
}

// TestDictionaries checks, through DuckDB's parquet_metadata, that text
// columns are dictionary-encoded and the others (timestamps, counters,
// flags) are not: a dictionary pays only for repeated text and costs
// memory for every open row group.
func TestDictionaries(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	for _, tbl := range []schemas.Table{schemas.Users, schemas.Participants} {
		t.Run(tbl.Name, func(t *testing.T) {
			s, err := stage.Create(filepath.Join(t.TempDir(), "staging"), []schemas.Table{tbl}, manifest("r1"), stage.Options{Allocator: mem})
			if err != nil {
				t.Fatal(err)
			}
			write(t, mem, s, tbl, 1, 0, 500, 100)
			files, err := s.Finish(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := sinktest.OpenDB(t, "").Query(fmt.Sprintf(
				"SELECT path_in_schema, bool_or(encodings LIKE '%%DICTIONARY%%') FROM parquet_metadata('%s') GROUP BY ALL", files[tbl.Name].Path))
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			dict := map[string]bool{}
			for rows.Next() {
				var col string
				var d bool
				if err := rows.Scan(&col, &d); err != nil {
					t.Fatal(err)
				}
				dict[col] = d
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			text := 0
			for _, f := range tbl.Schema.Fields() {
				if f.Type.ID() == arrow.LIST {
					continue // list elements keep the writer's default
				}
				d, ok := dict[f.Name]
				if !ok {
					t.Errorf("column %s missing from the file's metadata", f.Name)
					continue
				}
				isText := f.Type.ID() == arrow.STRING
				if isText {
					text++
				}
				if d != isText {
					t.Errorf("column %s (%s): dictionary-encoded %v, want %v", f.Name, f.Type, d, isText)
				}
			}
			if text == 0 || text == len(tbl.Schema.Fields()) {
				t.Errorf("table %s has %d text columns of %d: the check proves nothing", tbl.Name, text, len(tbl.Schema.Fields()))
			}
		})
	}
}

// TestCheckpointResume checkpoints a run part-way, writes more that no
// checkpoint vouches for (and tears the spool), and resumes it: the kept
// table holds exactly what the checkpoint vouched for plus what the
// resumed run writes, in one file; the table not kept starts empty.
func TestCheckpointResume(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	p, u := schemas.Participants, schemas.Services
	tables := []schemas.Table{p, u}
	dir := filepath.Join(t.TempDir(), "staging")
	s, err := stage.Create(dir, tables, manifest("r1"), stage.Options{Allocator: mem, Spool: true})
	if err != nil {
		t.Fatal(err)
	}
	write(t, mem, s, p, 1, 0, 120, 50)
	write(t, mem, s, u, 1, 0, 3, 10)
	if err := s.Checkpoint([]byte(`{"step":1}`), []string{"P a", "D a"}); err != nil {
		t.Fatal(err)
	}
	write(t, mem, s, p, 1, 120, 200, 40)
	if err := s.Checkpoint([]byte(`{"step":2}`), []string{"P b"}); err != nil {
		t.Fatal(err)
	}
	write(t, mem, s, p, 1, 200, 260, 30) // not checkpointed: lost
	s.Abort()
	// A crash mid-write leaves bytes past the checkpoint in the spool and
	// in the log.
	seg := filepath.Join(dir, "spool", p.Name+".0.arrows")
	f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("torn bytes"))
	f.Close()

	if got, err := stage.ReadManifest(dir); err != nil || got.Fingerprint != "fp" {
		t.Fatalf("manifest %+v, %v", got, err)
	}
	s2, cp, err := stage.Resume(dir, tables, []string{p.Name}, stage.Options{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	if string(cp.State) != `{"step":2}` || len(cp.Log) != 3 || cp.Log[2] != "P b" || cp.Finished {
		t.Errorf("checkpoint state %s, log %q, finished %v", cp.State, cp.Log, cp.Finished)
	}
	if rows := s2.Rows(); rows[p.Name] != 200 || rows[u.Name] != 0 {
		t.Errorf("resumed rows %v, want 200 participants and no services", rows)
	}
	write(t, mem, s2, p, 1, 200, 230, 30)
	if err := s2.Checkpoint([]byte(`{"step":3}`), []string{"D b"}); err != nil {
		t.Fatal(err)
	}
	files, err := s2.Finish([]byte(`{"step":4}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	db := sinktest.OpenDB(t, "")
	sinktest.Check(t, db, p, fmt.Sprintf("read_parquet('%s')", files[p.Name].Path), 1, 230)
	sinktest.Check(t, db, u, fmt.Sprintf("read_parquet('%s')", files[u.Name].Path), 1, 0)

	// A finished stage resumes as it is: no replay, the same files.
	st, err := os.Stat(files[p.Name].Path)
	if err != nil {
		t.Fatal(err)
	}
	s3, cp, err := stage.Resume(dir, tables, []string{p.Name}, stage.Options{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	if !cp.Finished || !s3.Finished() || string(cp.State) != `{"step":4}` || len(cp.Log) != 4 {
		t.Errorf("finished checkpoint: finished %v/%v, state %s, log %q", cp.Finished, s3.Finished(), cp.State, cp.Log)
	}
	again, err := s3.Finish(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(again[p.Name].Path)
	if again[p.Name].Rows != 230 || st2.ModTime() != st.ModTime() || st2.Size() != st.Size() {
		t.Errorf("finished resume rewrote the file or lost its rows: %d rows", again[p.Name].Rows)
	}
	rec := sinktest.Record(mem, p, 1, 0, 1)
	defer rec.Release()
	if err := s3.Write(context.Background(), p.Name, rec); err == nil {
		t.Error("a finished stage took a write")
	}
}

// TestCheckpointErrorsAreReported: a checkpoint whose log cannot be
// written fails, and the previous checkpoint stays the one on disk.
func TestCheckpointErrorsAreReported(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	tbl := schemas.Users
	dir := filepath.Join(t.TempDir(), "staging")
	s, err := stage.Create(dir, []schemas.Table{tbl}, manifest("r1"), stage.Options{Allocator: mem, Spool: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	write(t, mem, s, tbl, 1, 0, 10, 10)
	if err := s.Checkpoint([]byte(`{"n":1}`), nil); err != nil {
		t.Fatal(err)
	}
	// The log path taken by a directory: appending to it fails.
	if err := os.Mkdir(filepath.Join(dir, "events.log"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, mem, s, tbl, 1, 10, 20, 10)
	if err := s.Checkpoint([]byte(`{"n":2}`), []string{"P x"}); err == nil {
		t.Fatal("a checkpoint whose log could not be written reported success")
	}
	cp, err := stage.ReadCheckpoint(dir)
	if err != nil || string(cp.State) != `{"n":1}` {
		t.Errorf("checkpoint on disk: %v, %v; want the first one", cp, err)
	}
}

// TestCheckpointsOff: without the spool a stage refuses checkpoints and
// keeps no spool.
func TestCheckpointsOff(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := filepath.Join(t.TempDir(), "staging")
	s, err := stage.Create(dir, schemas.Lookup, manifest("r1"), stage.Options{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	if err := s.Checkpoint(nil, nil); err == nil {
		t.Error("checkpoint accepted with the spool off")
	}
	if _, err := os.Stat(filepath.Join(dir, "spool")); !os.IsNotExist(err) {
		t.Errorf("spool folder exists with the spool off: %v", err)
	}
}
