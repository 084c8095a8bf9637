package jobs_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/transform"
)

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

// TestExportEndToEndWithFaults exports a simulated account over real HTTP
// with every kind of fault on, into DuckDB and Parquet at once, and checks
// that every row of the dataset landed exactly once with every column equal
// to the API's, in both outputs.
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
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "out.duckdb")
	pqDir := filepath.Join(dir, "pq")
	date := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	runID := "run-e2e"

	d, err := sink.NewDuckDB(dbPath, schemas.Export, runID, date)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sink.NewParquet(pqDir, schemas.Export, runID, date)
	if err != nil {
		t.Fatal(err)
	}
	snk := sink.Multi(d, p)
	defer snk.Close()
	sum, err := jobs.Export(context.Background(), client(t, srv, 8), snk, jobs.Config{
		RunID: runID, SnapshotDate: date, Concurrency: 8, BatchRows: 500, Policy: transform.Policy{Mode: transform.PIIKeep},
	})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if err := snk.Close(); err != nil {
		t.Fatal(err)
	}

	c := srv.Counters()
	t.Logf("requests %d, 429s %d, 5xx %d, resets %d, truncations %d; client retries %d", c.Requests, c.Status429, c.Status5xx, c.Resets, c.Truncations, sum.Run.Retries)
	for name, n := range map[string]int64{"429": c.Status429, "5xx": c.Status5xx, "reset": c.Resets, "truncation": c.Truncations} {
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
	if sum.Duplicates == 0 || sum.Duplicates > c.Repeats {
		t.Errorf("the simulator repeated %d rows, the export dropped %d duplicates", c.Repeats, sum.Duplicates)
	}
	if sum.Run.Retries == 0 {
		t.Error("no retries counted although faults fired")
	}

	want := testkit.Expected(t, ds, srv)
	for _, tab := range schemas.Export {
		if sum.Run.Rows[tab.Name] != int64(len(want[tab.Name])) {
			t.Errorf("%s: run record says %d rows, dataset has %d", tab.Name, sum.Run.Rows[tab.Name], len(want[tab.Name]))
		}
		t.Run("duckdb/"+tab.Name, func(t *testing.T) {
			got := testkit.Query(t, dbPath, "SELECT * FROM "+tab.Name)
			testkit.CompareTable(t, tab.Name, got, want[tab.Name], "run_id")
			for _, r := range got {
				if r["run_id"] != runID {
					t.Fatalf("run_id = %v, want %s", r["run_id"], runID)
				}
			}
		})
		t.Run("parquet/"+tab.Name, func(t *testing.T) {
			got := testkit.ReadParquet(t, pqDir, tab.Name)
			testkit.CompareTable(t, tab.Name, got, want[tab.Name], "run_id", "snapshot_date")
		})
	}
	runs := testkit.Query(t, dbPath, "SELECT * FROM runs")
	if len(runs) != 1 || runs[0]["run_id"] != runID {
		t.Fatalf("runs table = %v", runs)
	}
	if svcs, _ := runs[0]["services"].([]any); len(svcs) != len(ds.Services()) {
		t.Errorf("runs.services = %v, want the %d services walked", runs[0]["services"], len(ds.Services()))
	}
	if runs[0]["parents_skipped"] != deleted || runs[0]["rows_participants"] != int64(len(want["participants"])) {
		t.Errorf("runs row = %v", runs[0])
	}
}

// TestExportNoColumnEntirelyNull guards against a column silently lost in
// flattening: on the demo-sized dataset, every exported column holds at
// least one value.
func TestExportNoColumnEntirelyNull(t *testing.T) {
	_, srv := startAPI(t, fakeapi.DefaultConfig(), fakeapi.Faults{})
	dbPath := filepath.Join(t.TempDir(), "out.duckdb")
	date := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	d, err := sink.NewDuckDB(dbPath, schemas.Export, "run-1", date)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := jobs.Export(context.Background(), client(t, srv, 4), d, jobs.Config{RunID: "run-1", SnapshotDate: date}); err != nil {
		t.Fatal(err)
	}
	for _, tab := range schemas.Export {
		for _, f := range tab.Schema.Fields() {
			n := testkit.Query(t, dbPath, "SELECT count("+f.Name+") AS n FROM "+tab.Name)[0]["n"]
			if n == int64(0) {
				t.Errorf("%s.%s is NULL in every row", tab.Name, f.Name)
			}
		}
	}
}
