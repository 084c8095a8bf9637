package sink_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
)

// TestCheckpointAndResume: rows written before a checkpoint survive a
// failed run and are published by the run that resumes it; rows written
// after the checkpoint, and every row of tables not kept, are not.
func TestCheckpointAndResume(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	ctx := context.Background()
	tables := []schemas.Table{schemas.Users, schemas.Participants}
	root := t.TempDir()
	db, pq := filepath.Join(root, "c.duckdb"), filepath.Join(root, "pq")
	open := func(opts ...sink.Option) sink.Sink {
		d, err := sink.NewDuckDB(db, tables, "run-1", base, opts...)
		if err != nil {
			t.Fatal(err)
		}
		p, err := sink.NewParquet(pq, tables, "run-1", base, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return sink.Multi(d, p)
	}
	writeRows := func(s sink.Sink, tbl schemas.Table, from, to int) {
		rec := record(t, mem, tbl, 1, from, to)
		defer rec.Release()
		if err := s.Write(ctx, tbl.Name, rec); err != nil {
			t.Fatal(err)
		}
	}

	// The first attempt: 300 rows of each table, a checkpoint, 200 more, a failure.
	s := open()
	for _, tbl := range tables {
		writeRows(s, tbl, 0, 300)
		if err := s.Rotate(ctx, tbl.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Checkpoint(ctx, []byte(`{"step":1}`), []string{"u:IS1/US1", "c:IS1/CH1"}); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		writeRows(s, tbl, 300, 500)
	}
	if err := s.Checkpoint(ctx, []byte(`{"step":2}`), []string{"c:IS1/CH2"}); err != nil {
		t.Fatal(err) // a checkpoint without rotation vouches only for completed parts
	}
	writeRows(s, schemas.Participants, 500, 600)
	if err := s.Suspend(); err != nil {
		t.Fatal(err)
	}
	before := hashTree(t, root)
	if _, ok := before[db]; ok {
		t.Fatal("a suspended run created the database file")
	}

	for _, duck := range []bool{true, false} {
		path := pq
		if duck {
			path = db
		}
		cp, err := sink.FindCheckpoint(path, duck)
		if err != nil || cp == nil {
			t.Fatalf("FindCheckpoint(%s) = %v, %v", path, cp, err)
		}
		if cp.RunID != "run-1" || string(cp.State) != `{"step":2}` || !slices.Equal(cp.Done, []string{"u:IS1/US1", "c:IS1/CH1", "c:IS1/CH2"}) {
			t.Errorf("checkpoint = %+v", cp)
		}
		if got := cp.Tables["participants"]; got.Parts != 1 || got.Rows != 300 {
			t.Errorf("participants checkpointed as %+v, want 1 part of 300 rows", got)
		}
	}

	// The resumed attempt keeps participants, redoes users, and adds rows 300..450.
	cp, _ := sink.FindCheckpoint(db, true)
	s = open(sink.WithResume(cp, []string{schemas.Participants.Name}))
	writeRows(s, schemas.Users, 0, 450)
	writeRows(s, schemas.Participants, 300, 450)
	if err := s.Checkpoint(ctx, []byte(`{"step":3}`), []string{"c:IS1/CH3"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, run("run-1", "export", base, nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	conn := openDB(t, db)
	for _, tbl := range tables {
		checkRows(t, conn, tbl, tbl.Name, 1, 450)
		checkRows(t, conn, tbl, glob(pq, tbl.Name), 1, 450)
	}
	if n := count(t, conn, "SELECT rows_participants FROM runs"); n != 450 {
		t.Errorf("run records %d participants, want 450", n)
	}
	assertNoStaging(t, root)
	if cp, err := sink.FindCheckpoint(db, true); cp != nil || err != nil {
		t.Errorf("checkpoint left after commit: %+v, %v", cp, err)
	}
}

// TestSuspendWithoutCheckpointRemovesStaging: a run that failed before its
// first checkpoint leaves nothing behind.
func TestSuspendWithoutCheckpointRemovesStaging(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	root := t.TempDir()
	p, err := sink.NewParquet(filepath.Join(root, "pq"), []schemas.Table{schemas.Users}, "run-1", base)
	if err != nil {
		t.Fatal(err)
	}
	rec := record(t, mem, schemas.Users, 1, 0, 10)
	defer rec.Release()
	if err := p.Write(context.Background(), schemas.Users.Name, rec); err != nil {
		t.Fatal(err)
	}
	if err := p.Suspend(); err != nil {
		t.Fatal(err)
	}
	assertNoStaging(t, root)
	if err := sink.RemoveStaging(filepath.Join(root, "pq"), false, ""); err != nil {
		t.Fatal(err)
	}
}
