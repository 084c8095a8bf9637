package duckdb_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/duckdb"
	"github.com/convsync/convsync/sink/internal/sinktest"
	"github.com/convsync/convsync/sink/runs"
	"github.com/convsync/convsync/sink/stage"
)

// staged writes rows of generation gen for each table into a stage and
// returns the staged Parquet files by table.
func staged(t *testing.T, tables []schemas.Table, gen, rows int) map[string]string {
	t.Helper()
	mem := memory.NewGoAllocator()
	s, err := stage.Create(filepath.Join(t.TempDir(), "staging"), tables,
		stage.Manifest{RunID: "r", Command: "export", Outputs: []string{"/x"}, Fingerprint: "fp"}, stage.Options{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		rec := sinktest.Record(mem, tb, gen, 0, rows)
		err := s.Write(context.Background(), tb.Name, rec)
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	files, err := s.Finish(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for name, f := range files {
		paths[name] = f.Path
	}
	return paths
}

func record(id, date string) runs.Record {
	now := time.Now().UTC()
	return runs.Record{RunID: id, Command: "export", SnapshotDate: date, StartedAt: now, EndedAt: now, Status: runs.Succeeded}
}

// TestPrepareFailureKeepsTheLastPublish makes Prepare fail part-way through
// its transaction, after the database is open: it returns the error (it
// must not panic) and the database keeps the last committed publish.
func TestPrepareFailureKeepsTheLastPublish(t *testing.T) {
	ctx := context.Background()
	tables := []schemas.Table{schemas.Users, schemas.Participants}
	for _, history := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "history"}[history], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.duckdb")
			target, err := duckdb.New(path, duckdb.Options{History: history, LockWait: time.Second, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			good := staged(t, tables, 1, 30)
			p, err := target.Prepare(ctx, tables, good, record("r1", "2026-11-01"))
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Commit(); err != nil {
				t.Fatal(err)
			}
			next := staged(t, tables, 2, 40)
			cases := []struct {
				name  string
				files map[string]string
				want  string
			}{
				{"a table without a staged file", map[string]string{schemas.Users.Name: next[schemas.Users.Name]}, "no staged file for table " + schemas.Participants.Name},
				{"a staged file gone", map[string]string{schemas.Users.Name: next[schemas.Users.Name], schemas.Participants.Name: filepath.Join(t.TempDir(), "gone.parquet")}, "table " + schemas.Participants.Name},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					p, err := target.Prepare(ctx, tables, tc.files, record("r2", "2026-11-02"))
					if err == nil {
						p.Rollback()
						t.Fatal("Prepare succeeded")
					}
					if p != nil {
						t.Errorf("Prepare returned a prepared publish with its error")
					}
					if !strings.Contains(err.Error(), tc.want) {
						t.Errorf("error %q does not name %q", err, tc.want)
					}
					db := sinktest.OpenDB(t, path+"?access_mode=read_only")
					for _, tb := range tables {
						sinktest.Check(t, db, tb, tb.Name, 1, 30)
					}
					var n int
					if err := db.QueryRow("SELECT count(*) FROM " + duckdb.RunsTable).Scan(&n); err != nil || n != 1 {
						t.Errorf("runs table: %d rows (%v), want the first run's alone", n, err)
					}
					db.Close()
				})
			}
		})
	}
}
