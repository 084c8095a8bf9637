package sink_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/internal/faultpoint"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/sink/internal/sinktest"
	"github.com/convsync/convsync/sink/runs"
)

var (
	day1 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	day2 = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
)

// TestMain lets the test binary stand in for another process holding a
// DuckDB file open (a reader), which DuckDB's file lock sees only across
// processes.
func TestMain(m *testing.M) {
	if path := os.Getenv("SINKTEST_HOLD_DUCKDB"); path != "" {
		db, err := sql.Open("duckdb", path+"?access_mode=read_only")
		if err == nil {
			err = db.Ping()
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("holding")
		bufio.NewReader(os.Stdin).ReadString('\n') // until the test closes stdin
		db.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holdDuckDB opens path read-only in another process until release.
func holdDuckDB(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SINKTEST_HOLD_DUCKDB="+path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "holding" {
		t.Fatalf("reader process: %q", line)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			stdin.Close()
			cmd.Wait()
		})
	}
	t.Cleanup(release)
	return release
}

// outputs is a test's pair of outputs.
type outputs struct {
	root, db, pq string
}

func newOutputs(t *testing.T) outputs {
	root := t.TempDir()
	return outputs{root: root, db: filepath.Join(root, "c.duckdb"), pq: filepath.Join(root, "lake")}
}

func (o outputs) config(id string, date time.Time, tables []schemas.Table) sink.Config {
	return sink.Config{DuckDB: o.db, Parquet: o.pq, Command: "export", RunID: id, SnapshotDate: date, Tables: tables,
		Fingerprint: "fp-" + runs.Date(date), Checkpoints: true, Keep: []string{"participants"},
		Logger: zerolog.Nop(), LockWait: 2 * time.Second}
}

// stageRun opens outputs and writes generation gen of tables into them.
func stageRun(t *testing.T, cfg sink.Config, rows map[string]int, gen int) *sink.Outputs {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	cfg.Allocator = mem
	out, err := sink.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range cfg.Tables {
		for i := 0; i < rows[tbl.Name]; i += 64 {
			rec := sinktest.Record(mem, tbl, gen, i, min(i+64, rows[tbl.Name]))
			err := out.Write(context.Background(), tbl.Name, rec)
			rec.Release()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func record(cfg sink.Config) runs.Record {
	return runs.Record{RunID: cfg.RunID, Command: cfg.Command, Version: "test", StartedAt: day1, EndedAt: day1.Add(time.Minute),
		PII: "keep", Requests: 42, Services: []string{"IS1"}, UnknownFields: map[string]map[string]int64{"users": {"x": 2}}}
}

// publishRun stages and publishes one run.
func publishRun(t *testing.T, cfg sink.Config, rows map[string]int, gen int) runs.Record {
	t.Helper()
	out := stageRun(t, cfg, rows, gen)
	defer out.Close()
	rec, err := out.Publish(context.Background(), record(cfg), []byte(`{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// state is what a reader sees of one table in both outputs.
type state struct{ duckGen, duckRows, pqGen, pqRows int }

func (o outputs) read(t *testing.T, tbl schemas.Table, date time.Time) state {
	t.Helper()
	var s state
	s.duckGen, s.duckRows = -2, -1
	if _, err := os.Stat(o.db); err == nil {
		db := sinktest.OpenDB(t, o.db+"?access_mode=read_only")
		var n int
		db.QueryRow("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", tbl.Name).Scan(&n)
		if n > 0 {
			s.duckGen, s.duckRows = sinktest.Generation(t, db, tbl, `"`+tbl.Name+`"`, "")
		}
		db.Close()
	}
	s.pqGen, s.pqRows = -2, -1
	part := filepath.Join(o.pq, tbl.Name, "snapshot_date="+runs.Date(date))
	if _, err := os.Stat(part); err == nil {
		s.pqGen, s.pqRows = sinktest.Generation(t, sinktest.OpenDB(t, ""), tbl, sinktest.Glob(o.pq, tbl.Name),
			"WHERE snapshot_date = DATE '"+runs.Date(date)+"'")
	}
	return s
}

// controlFiles lists what convsync keeps beside the outputs, besides locks.
func (o outputs) controlFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{o.db + ".convsync", filepath.Join(o.pq, ".convsync")} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && p != dir && d.Name() != "lock" && d.Name() != "pending" {
				out = append(out, strings.TrimPrefix(p, o.root))
			}
			return nil
		})
	}
	return out
}

func TestPublishBothOutputs(t *testing.T) {
	o := newOutputs(t)
	tables := []schemas.Table{schemas.Participants, schemas.Users}
	cfg := o.config("run1", day1, tables)
	rec := publishRun(t, cfg, map[string]int{"participants": 300, "users": 5}, 1)
	if rec.Rows["participants"] != 300 || rec.Rows["users"] != 5 || rec.Status != runs.Succeeded || rec.SnapshotDate != "2026-11-22" {
		t.Errorf("published record %+v", rec)
	}
	for tbl, n := range map[schemas.Table]int{schemas.Participants: 300, schemas.Users: 5} {
		if got := o.read(t, tbl, day1); got != (state{1, n, 1, n}) {
			t.Errorf("%s: %+v, want generation 1 with %d rows in both", tbl.Name, got, n)
		}
	}
	db := sinktest.OpenDB(t, o.db)
	var version, unknown string
	var rows int64
	if err := db.QueryRow("SELECT version, unknown_fields, rows_participants FROM runs WHERE run_id = 'run1'").Scan(&version, &unknown, &rows); err != nil ||
		version != "test" || rows != 300 || unknown != `{"users":{"x":2}}` {
		t.Errorf("runs row: %q %q %d %v", version, unknown, rows, err)
	}
	var comment string
	db.QueryRow("SELECT comment FROM duckdb_columns() WHERE table_name = 'participants' AND column_name = 'identity'").Scan(&comment)
	if comment != "pii:standard" {
		t.Errorf("identity comment %q", comment)
	}
	b, err := os.ReadFile(filepath.Join(o.pq, "_runs", "run1.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := runs.Unmarshal(b); err != nil || got.Rows["users"] != 5 || got.Version != "test" {
		t.Errorf("_runs/run1.json: %+v, %v", got, err)
	}
	entries, _ := os.ReadDir(filepath.Join(o.pq, "participants", "snapshot_date=2026-11-22"))
	if len(entries) != 1 || entries[0].Name() != "part-00000.parquet" {
		t.Errorf("the partition holds %v, want exactly part-00000.parquet", entries)
	}
	if left := o.controlFiles(t); len(left) > 0 {
		t.Errorf("staging or journals left after the publish: %v", left)
	}
}

func TestRerunsAndDates(t *testing.T) {
	o := newOutputs(t)
	tables := []schemas.Table{schemas.Participants}
	publishRun(t, o.config("run1", day1, tables), map[string]int{"participants": 300}, 1)
	publishRun(t, o.config("run2", day1, tables), map[string]int{"participants": 120}, 2)
	if got := o.read(t, schemas.Participants, day1); got != (state{2, 120, 2, 120}) {
		t.Errorf("re-run of the same date: %+v, want generation 2 (120 rows) in both", got)
	}
	publishRun(t, o.config("run3", day2, tables), map[string]int{"participants": 50}, 3)
	if got := o.read(t, schemas.Participants, day1); got.pqGen != 2 || got.pqRows != 120 {
		t.Errorf("the earlier date's partition changed: %+v", got)
	}
	if got := o.read(t, schemas.Participants, day2); got != (state{3, 50, 3, 50}) {
		t.Errorf("new date: %+v", got)
	}
	var n int
	sinktest.OpenDB(t, o.db).QueryRow("SELECT count(*) FROM runs").Scan(&n)
	if n != 3 {
		t.Errorf("%d runs rows, want 3", n)
	}
}

func TestLookupLeavesExportTables(t *testing.T) {
	o := newOutputs(t)
	publishRun(t, o.config("run1", day1, []schemas.Table{schemas.Participants}), map[string]int{"participants": 30}, 1)
	cfg := o.config("run2", day1, schemas.Lookup)
	cfg.Command = "lookup"
	publishRun(t, cfg, map[string]int{"participant_conversations": 9}, 2)
	if got := o.read(t, schemas.Participants, day1); got != (state{1, 30, 1, 30}) {
		t.Errorf("participants after the lookup: %+v", got)
	}
	if got := o.read(t, schemas.ParticipantConversations, day1); got != (state{2, 9, 2, 9}) {
		t.Errorf("participant_conversations: %+v", got)
	}
}

// TestSecondRunIsBusy: while a run holds the outputs, another is refused
// with ErrBusy at once and changes nothing, the first one's staging
// included; once the first is done, the next run goes ahead.
func TestSecondRunIsBusy(t *testing.T) {
	o := newOutputs(t)
	tables := []schemas.Table{schemas.Participants}
	first := stageRun(t, o.config("run1", day1, tables), map[string]int{"participants": 100}, 1)
	if err := first.Checkpoint(context.Background(), []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	staging := first.Staging()
	before := testkit.HashTree(t, o.root, isLock)
	for _, cfg := range []sink.Config{o.config("run2", day1, tables), {DuckDB: o.db, Command: "lookup", RunID: "run3", SnapshotDate: day1, Tables: schemas.Lookup}} {
		_, err := sink.Open(context.Background(), cfg)
		if !errors.Is(err, sink.ErrBusy) {
			t.Fatalf("second run: %v, want ErrBusy", err)
		}
		if !strings.Contains(err.Error(), o.db) || !strings.Contains(err.Error(), "run1") {
			t.Errorf("the refusal does not name the output and its holder: %v", err)
		}
	}
	if after := testkit.HashTree(t, o.root, isLock); !maps.Equal(before, after) {
		t.Errorf("the refused runs changed files:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := os.Stat(staging); err != nil {
		t.Errorf("the first run's staging is gone: %v", err)
	}
	if _, err := first.Publish(context.Background(), record(o.config("run1", day1, tables)), []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	first.Close()
	publishRun(t, o.config("run4", day1, tables), map[string]int{"participants": 10}, 4)
	if got := o.read(t, schemas.Participants, day1); got != (state{4, 10, 4, 10}) {
		t.Errorf("after the runs: %+v", got)
	}
}

// TestBadOutputsRefusedFirst: outputs that cannot be written are refused
// with ErrBadOutput before anything is created.
func TestBadOutputsRefusedFirst(t *testing.T) {
	dir := t.TempDir()
	pqFile := filepath.Join(dir, "x.parquet")
	os.WriteFile(pqFile, []byte("PAR1\x00\x00\x00\x00PAR1"), 0o644)
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("hello, this is not a database"), 0o644)
	cases := []struct {
		name          string
		duckdb, pq    string
		mention, want string
	}{
		{"duckdb is a directory", dir, "", dir, "directory"},
		{"duckdb is a parquet file", pqFile, "", pqFile, "Parquet"},
		{"duckdb is some other file", text, "", text, "other kind"},
		{"duckdb folder missing", filepath.Join(dir, "nope", "c.duckdb"), "", "nope", "does not exist"},
		{"parquet root is a file", "", text, text, "is a file"},
		{"parquet root's parent missing", "", filepath.Join(dir, "a", "b"), "a", "does not exist"},
	}
	before := testkit.HashTree(t, dir, isLock)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sink.Open(context.Background(), sink.Config{DuckDB: tc.duckdb, Parquet: tc.pq, Command: "export", RunID: "r",
				SnapshotDate: day1, Tables: schemas.Export})
			if !errors.Is(err, sink.ErrBadOutput) || !strings.Contains(err.Error(), tc.mention) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrBadOutput naming %q and saying %q", err, tc.mention, tc.want)
			}
		})
	}
	if after := testkit.HashTree(t, dir, isLock); !maps.Equal(before, after) {
		t.Errorf("refused outputs changed files: %v", after)
	}
}

// TestDuckDBReaderAtPublish: a reader holding the DuckDB file makes the
// publish wait up to the lock wait; past it the run fails with ErrBusy,
// leaving both outputs as they were and its staging for a resume, which
// then publishes without writing again.
func TestDuckDBReaderAtPublish(t *testing.T) {
	o := newOutputs(t)
	tables := []schemas.Table{schemas.Participants}
	publishRun(t, o.config("run1", day1, tables), map[string]int{"participants": 40}, 1)

	t.Run("released within the wait", func(t *testing.T) {
		release := holdDuckDB(t, o.db)
		cfg := o.config("run2", day1, tables)
		// The reader lets go once the publish says it waits for it.
		waiting := make(chan struct{})
		var once sync.Once
		cfg.Logger = zerolog.New(writerFunc(func(p []byte) (int, error) {
			if strings.Contains(string(p), "held open by another process") {
				once.Do(func() { close(waiting) })
			}
			return len(p), nil
		}))
		out := stageRun(t, cfg, map[string]int{"participants": 20}, 2)
		defer out.Close()
		go func() { <-waiting; release() }()
		if _, err := out.Publish(context.Background(), record(cfg), []byte(`{}`), nil); err != nil {
			t.Fatalf("publish after the reader let go: %v", err)
		}
		select {
		case <-waiting:
		default:
			t.Error("the publish never waited for the reader")
		}
		if got := o.read(t, schemas.Participants, day1); got != (state{2, 20, 2, 20}) {
			t.Errorf("after the wait: %+v", got)
		}
	})
	t.Run("held past the wait", func(t *testing.T) {
		release := holdDuckDB(t, o.db)
		cfg := o.config("run3", day1, tables)
		cfg.LockWait = 300 * time.Millisecond
		out := stageRun(t, cfg, map[string]int{"participants": 30}, 3)
		_, err := out.Publish(context.Background(), record(cfg), []byte(`{}`), nil)
		if !errors.Is(err, sink.ErrBusy) {
			t.Fatalf("publish with a reader holding the file: %v, want ErrBusy", err)
		}
		if !out.Resumable() {
			t.Error("the run is not resumable after the lock wait")
		}
		out.Close()
		release()
		if got := o.read(t, schemas.Participants, day1); got != (state{2, 20, 2, 20}) {
			t.Errorf("outputs changed by the refused publish: %+v", got)
		}
		cfg.RunID, cfg.Resume = "run4", true
		again, err := sink.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		if cp := again.Resumed(); cp == nil || !cp.Finished || again.RunID() != "run3" {
			t.Fatalf("the resume did not find the finished run: %+v", cp)
		}
		if _, err := again.Publish(context.Background(), record(cfg), nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := o.read(t, schemas.Participants, day1); got != (state{3, 30, 3, 30}) {
			t.Errorf("after the resume: %+v", got)
		}
	})
}

// publishSteps are the fault points of a publish, in order, and whether
// the publish is decided once the step is reached.
var publishSteps = []struct {
	step    string
	decided bool
}{
	{"finish", false}, {"pointers", false}, {"prepare", false},
	{"decided", true}, {"duckdb-commit", true},
	{"parquet:participants", true}, {"parquet:users", true}, {"run-record", true}, {"cleanup", true},
}

// TestPublishFaults fails the publish at each of its steps: every table of
// each output then holds the old run or the new one, complete; the outputs
// agree unless the publish was decided; and the next run on the outputs
// (here: one writing only the DuckDB file) finishes a decided publish in
// both, or finds nothing to finish.
func TestPublishFaults(t *testing.T) {
	tables := []schemas.Table{schemas.Participants, schemas.Users}
	rows1 := map[string]int{"participants": 200, "users": 7}
	rows2 := map[string]int{"participants": 90, "users": 3}
	for _, tc := range publishSteps {
		t.Run(tc.step, func(t *testing.T) {
			defer faultpoint.Disarm()
			o := newOutputs(t)
			publishRun(t, o.config("old", day1, tables), rows1, 1)
			out := stageRun(t, o.config("new", day1, tables), rows2, 2)
			faultpoint.Arm(tc.step, false)
			_, err := out.Publish(context.Background(), record(o.config("new", day1, tables)), []byte(`{}`), nil)
			out.Close()
			faultpoint.Disarm()
			if !errors.Is(err, faultpoint.ErrInjected) {
				t.Fatalf("publish: %v, want the injected fault", err)
			}
			if out.Decided() != tc.decided {
				t.Errorf("decided = %v after a fault at %s", out.Decided(), tc.step)
			}
			for _, tbl := range tables {
				s := o.read(t, tbl, day1)
				for _, side := range [][2]int{{s.duckGen, s.duckRows}, {s.pqGen, s.pqRows}} {
					if !(side == [2]int{1, rows1[tbl.Name]} || side == [2]int{2, rows2[tbl.Name]}) {
						t.Errorf("%s after a fault at %s: %+v, want the old or the new run, complete", tbl.Name, tc.step, s)
					}
				}
				if !tc.decided && (s.duckGen != 1 || s.pqGen != 1) {
					t.Errorf("%s: an undecided publish changed the outputs: %+v", tbl.Name, s)
				}
			}
			// The next command on the DuckDB file alone finishes it in both.
			next, err := sink.Open(context.Background(), sink.Config{DuckDB: o.db, Command: "lookup", RunID: "next",
				SnapshotDate: day1, Tables: schemas.Lookup, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			next.Close()
			want := 1
			if tc.decided {
				want = 2
			}
			for _, tbl := range tables {
				n := map[int]map[string]int{1: rows1, 2: rows2}[want][tbl.Name]
				if s := o.read(t, tbl, day1); s != (state{want, n, want, n}) {
					t.Errorf("%s after the next run: %+v, want generation %d in both", tbl.Name, s, want)
				}
			}
			if left := o.controlFiles(t); tc.decided && len(left) > 0 {
				t.Errorf("left after the roll forward: %v", left)
			}
			var runsRows int
			sinktest.OpenDB(t, o.db).QueryRow("SELECT count(*) FROM runs WHERE run_id = 'new'").Scan(&runsRows)
			if tc.decided && runsRows != 1 {
				t.Errorf("runs holds %d rows of the rolled-forward run, want 1", runsRows)
			}
		})
	}
}

var _ = json.Marshal

// writerFunc is an io.Writer of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// isLock names the lock files, which a run leaves in place, unchanged.
func isLock(p string) bool { return filepath.Base(p) == "lock" }
