package jobs_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
)

// TestResumeFetchesOnlyWhatWasNotFinished interrupts an export after a few
// checkpoints, resumes it, and checks that the resumed attempt fetched no
// child list the first attempt had finished, and that both outputs hold
// every row of the dataset exactly once.
func TestResumeFetchesOnlyWhatWasNotFinished(t *testing.T) {
	ds, srv := startAPI(t, fakeapi.DefaultConfig(), fakeapi.Faults{Latency: 8 * time.Millisecond, DeletedConversations: 0.03})
	dir := t.TempDir()
	dbPath, pqDir := filepath.Join(dir, "out.duckdb"), filepath.Join(dir, "pq")
	date := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	const runID = "run-resume"
	open := func(opts ...sink.Option) jobs.Sink {
		d, err := sink.NewDuckDB(dbPath, schemas.Export, runID, date, opts...)
		if err != nil {
			t.Fatal(err)
		}
		p, err := sink.NewParquet(pqDir, schemas.Export, runID, date, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return sink.Multi(d, p)
	}
	cfg := jobs.Config{RunID: runID, SnapshotDate: date, Concurrency: 2, Fingerprint: "fp",
		CheckpointFirst: 200 * time.Millisecond, CheckpointMax: 200 * time.Millisecond}

	// First attempt: cut off part-way.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	snk := open()
	_, err := jobs.Export(ctx, client(t, srv, 2), snk, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first attempt: err = %v, want it cut off by the deadline", err)
	}
	if err := snk.Suspend(); err != nil {
		t.Fatal(err)
	}
	first := srv.Counters()

	cp, err := sink.FindCheckpoint(dbPath, true)
	if err != nil || cp == nil {
		t.Fatalf("no checkpoint after the interrupted attempt: %v", err)
	}
	res, err := jobs.LoadResume(cp)
	if err != nil {
		t.Fatal(err)
	}
	if res.Finished() == 0 || res.State.Fingerprint != "fp" {
		t.Fatalf("checkpoint records %d finished parents, fingerprint %q", res.Finished(), res.State.Fingerprint)
	}

	// Second attempt: resumes.
	srv.ResetCounters()
	snk = open(sink.WithResume(cp, jobs.ResumableTables))
	defer snk.Close()
	cfg.Resume = res
	sum, err := jobs.Export(context.Background(), client(t, srv, 2), snk, cfg)
	if err != nil {
		t.Fatalf("resumed attempt: %v", err)
	}
	second := srv.Counters()

	// Every parent's child list is fetched by exactly one of the attempts:
	// the resumed one asks for none of those the checkpoint vouches for.
	parents := 0
	for _, s := range ds.Services() {
		parents += len(ds.Users(s.SID)) + len(ds.Conversations(s.SID))
	}
	childLists := func(c fakeapi.Counters) int64 {
		return c.ByEndpoint[fakeapi.EndpointUserConversations] + c.ByEndpoint[fakeapi.EndpointParticipants]
	}
	t.Logf("parents %d, finished before the interruption %d; child-list requests: first %d, resumed %d",
		parents, res.Finished(), childLists(first), childLists(second))
	if got, max := childLists(second), int64(parents-res.Finished()+20); got > max {
		t.Errorf("resumed attempt made %d child-list requests, want at most %d (parents %d, finished %d)", got, max, parents, res.Finished())
	}
	// Requests count up to the last checkpoint of the first attempt (what
	// came after it is redone) plus the resumed attempt's.
	if res.State.Requests == 0 || res.State.Requests > first.Requests || sum.Run.Requests != res.State.Requests+second.Requests {
		t.Errorf("run records %d requests; checkpoint %d of the first attempt's %d, plus %d", sum.Run.Requests, res.State.Requests, first.Requests, second.Requests)
	}
	want := testkit.Expected(t, ds, srv)
	for _, tab := range schemas.Export {
		testkit.CompareTable(t, tab.Name, testkit.Query(t, dbPath, "SELECT * FROM "+tab.Name), want[tab.Name], "run_id")
		testkit.CompareTable(t, tab.Name, testkit.ReadParquet(t, pqDir, tab.Name), want[tab.Name], "run_id", "snapshot_date")
		if sum.Run.Rows[tab.Name] != int64(len(want[tab.Name])) {
			t.Errorf("%s: run record says %d rows, dataset has %d", tab.Name, sum.Run.Rows[tab.Name], len(want[tab.Name]))
		}
	}
	if deleted := testkit.Skipped(ds, srv); sum.Run.ParentsSkipped != deleted {
		t.Errorf("parents skipped %d over both attempts, simulator deleted %d", sum.Run.ParentsSkipped, deleted)
	}
	if cp, _ := sink.FindCheckpoint(dbPath, true); cp != nil {
		t.Error("the checkpoint outlived the committed run")
	}
}
