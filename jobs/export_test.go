package jobs_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/transform"
)

var date = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

// startAPI serves a simulated account on loopback for the test's lifetime.
func startAPI(t *testing.T, cfg fakeapi.DatasetConfig, faults fakeapi.Faults) (*fakeapi.Dataset, *fakeapi.Server) {
	t.Helper()
	ds := fakeapi.NewDataset(cfg)
	srv, err := fakeapi.Start("127.0.0.1:0", fakeapi.Options{Dataset: ds, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return ds, srv
}

// client returns a real HTTP client for srv with short backoffs.
func client(t testing.TB, srv *fakeapi.Server, concurrency int) *extract.Client {
	t.Helper()
	c := srv.Credentials()
	cl, err := extract.New(extract.Config{
		BaseURL:     srv.URL(),
		Credentials: extract.Credentials{AccountSID: c.AccountSID, AuthToken: c.AuthToken},
		Concurrency: concurrency,
		MaxRetries:  12,
		BaseBackoff: time.Millisecond,
		MaxBackoff:  20 * time.Millisecond,
		Logger:      zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// outputs names a test's DuckDB file and Parquet root.
type outputs struct{ db, pq string }

func newOutputs(t testing.TB) outputs {
	dir := t.TempDir()
	return outputs{db: filepath.Join(dir, "out.duckdb"), pq: filepath.Join(dir, "pq")}
}

// open opens both outputs for a run of tables.
func (o outputs) open(t testing.TB, tables []schemas.Table, runID string, mem memory.Allocator, resume bool) *sink.Outputs {
	t.Helper()
	out, err := sink.Open(context.Background(), sink.Config{DuckDB: o.db, Parquet: o.pq, Command: "export", RunID: runID,
		SnapshotDate: date, Tables: tables, Fingerprint: "fp", Checkpoints: true, Resume: resume, Keep: jobs.ResumedTables,
		Allocator: mem, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return out
}

// checkOutputs compares every export table of both outputs with the
// dataset, row by row and column by column.
func (o outputs) check(t *testing.T, ds *fakeapi.Dataset, srv *fakeapi.Server, runID string) {
	t.Helper()
	want := testkit.Expected(t, ds, srv)
	for _, tab := range schemas.Export {
		t.Run("duckdb/"+tab.Name, func(t *testing.T) {
			got := testkit.Query(t, o.db, "SELECT * FROM "+tab.Name)
			testkit.CompareTable(t, tab.Name, got, want[tab.Name], "run_id")
			for _, r := range got {
				if r["run_id"] != runID {
					t.Fatalf("run_id = %v, want %s", r["run_id"], runID)
				}
			}
		})
		t.Run("parquet/"+tab.Name, func(t *testing.T) {
			testkit.CompareTable(t, tab.Name, testkit.ReadParquet(t, o.pq, tab.Name), want[tab.Name], "run_id", "snapshot_date")
		})
	}
}

// TestExportEndToEndWithFaults exports a simulated account over real HTTP
// with every kind of fault on, into DuckDB and Parquet at once, through a
// checked allocator, and checks that every row of the dataset landed
// exactly once with every column equal to the API's, in both outputs, and
// that no Arrow memory leaked.
func TestExportEndToEndWithFaults(t *testing.T) {
	faults := fakeapi.Faults{
		Seed:                 7,
		MaxInFlight:          6,
		Rate429:              0.03,
		RetryAfterRate:       0.1,
		Rate500:              0.02,
		Rate503:              0.02,
		RateReset:            0.02,
		RateTruncate:         0.02,
		DeletedConversations: 0.03,
		DeletedUsers:         0.03,
		RateRepeat:           0.5,
		DeletedServiceSIDs:   []string{fakeapi.NewDataset(fakeapi.DefaultConfig()).Services()[2].SID},
	}
	ds, srv := startAPI(t, fakeapi.DefaultConfig(), faults)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	o := newOutputs(t)
	out := o.open(t, schemas.Export, "run-e2e", mem, false)
	sum, err := jobs.Export(context.Background(), client(t, srv, 8), out, jobs.Config{
		RunID: "run-e2e", SnapshotDate: date, Workers: 8, BatchRows: 500, Policy: transform.Policy{Mode: transform.PIIKeep},
		Allocator: mem, Checkpoints: &jobs.Schedule{Min: 50 * time.Millisecond, Max: time.Second, Share: 0.05}, Fingerprint: "fp",
	})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	out.Close()
	mem.AssertSize(t, 0)

	c := srv.Counters()
	t.Logf("requests %d, 429s %d, 5xx %d, resets %d, truncations %d, repeats %d; client retries %d, duplicates dropped %d",
		c.Requests, c.Status429, c.Status5xx, c.Resets, c.Truncations, c.Repeats, sum.Run.Retries, sum.Run.Duplicates)
	for name, n := range map[string]int64{"429": c.Status429, "5xx": c.Status5xx, "reset": c.Resets, "truncation": c.Truncations, "repeat": c.Repeats} {
		if n == 0 {
			t.Errorf("no %s fault fired: the test did not exercise it", name)
		}
	}
	deleted := testkit.Skipped(ds, srv)
	if int64(len(sum.Skipped)) != sum.Run.ParentsSkipped {
		t.Errorf("summary lists %d skipped parents, the run record counts %d", len(sum.Skipped), sum.Run.ParentsSkipped)
	}
	if deleted <= 2 || sum.Run.ParentsSkipped != deleted || c.DeletedService404 == 0 {
		t.Errorf("parents skipped = %d, the simulator deleted %d (service 404s %d)", sum.Run.ParentsSkipped, deleted, c.DeletedService404)
	}
	// A repeated page can still be cut off by another fault and retried,
	// so the client sees at most as many repeats as the simulator served.
	if sum.Run.Duplicates == 0 || sum.Run.Duplicates > c.Repeats {
		t.Errorf("the simulator repeated %d rows, the export dropped %d duplicates", c.Repeats, sum.Run.Duplicates)
	}
	if sum.Run.Retries == 0 || sum.Run.Throttled == 0 {
		t.Errorf("retries %d, throttled %d although faults fired", sum.Run.Retries, sum.Run.Throttled)
	}
	want := testkit.Expected(t, ds, srv)
	for _, tab := range schemas.Export {
		if sum.Run.Rows[tab.Name] != int64(len(want[tab.Name])) {
			t.Errorf("%s: run record says %d rows, dataset has %d", tab.Name, sum.Run.Rows[tab.Name], len(want[tab.Name]))
		}
	}
	o.check(t, ds, srv, "run-e2e")
	runs := testkit.Query(t, o.db, "SELECT * FROM runs")
	if len(runs) != 1 || runs[0]["run_id"] != "run-e2e" {
		t.Fatalf("runs table = %v", runs)
	}
	if svcs, _ := runs[0]["services"].([]any); len(svcs) != len(ds.Services()) {
		t.Errorf("runs.services = %v, want the %d services walked", runs[0]["services"], len(ds.Services()))
	}
	if runs[0]["parents_skipped"] != deleted || runs[0]["rows_participants"] != int64(len(want["participants"])) ||
		runs[0]["duplicates"] != sum.Run.Duplicates {
		t.Errorf("runs row = %v", runs[0])
	}
}

// TestExportRequestsAreMinimal: without faults, an export sends exactly
// the minimal number of requests (every list at its maximum page size,
// nothing twice), and no column is NULL in every row.
func TestExportRequestsAreMinimal(t *testing.T) {
	ds, srv := startAPI(t, fakeapi.DefaultConfig(), fakeapi.Faults{Seed: 5, DeletedConversations: 0.02, DeletedUsers: 0.02})
	o := newOutputs(t)
	out := o.open(t, schemas.Export, "run-1", nil, false)
	cl := client(t, srv, 16)
	sum, err := jobs.Export(context.Background(), cl, out, jobs.Config{RunID: "run-1", SnapshotDate: date})
	if err != nil {
		t.Fatal(err)
	}
	if want := testkit.Requests(ds, srv, nil); cl.Stats().Requests != want || srv.Counters().Requests != want || sum.Run.Requests != want {
		t.Errorf("requests: client %d, server %d, run record %d; the minimum is %d",
			cl.Stats().Requests, srv.Counters().Requests, sum.Run.Requests, want)
	}
	for _, tab := range schemas.Export {
		for _, f := range tab.Schema.Fields() {
			if n := testkit.Query(t, o.db, "SELECT count("+f.Name+") AS n FROM "+tab.Name)[0]["n"]; n == int64(0) {
				t.Errorf("%s.%s is NULL in every row", tab.Name, f.Name)
			}
		}
	}
}
