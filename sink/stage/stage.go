// Package stage holds a run's staging area: a folder on local disk where
// the run's tables are written before they are published.
//
// Every table gets one Parquet file, written as batches arrive (the file
// that is published, and that DuckDB loads), and, when checkpoints are on,
// a spool of the same batches in Arrow IPC segments. A checkpoint syncs
// the spools and records how far each is durable, together with the job's
// own state and a log of the work it finished; nothing else needs to be
// durable before the run ends. A resumed run cuts each kept spool back to
// its checkpoint and replays it into a fresh Parquet file, so a table is
// one file however often the run checkpointed or was resumed.
//
// A staging folder holds:
//
//	manifest.json    the run, its outputs and its inputs' fingerprint
//	<table>.parquet  the table's Parquet file
//	spool/           the tables' IPC segments, <table>.<n>.arrows
//	checkpoint.json  the last checkpoint
//	events.log       the job's log lines, appended at every checkpoint
//
// Files are replaced or appended so that a crash at any instant leaves the
// previous checkpoint valid: the log is appended and synced first, then
// checkpoint.json is replaced by a rename.
package stage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/convsync/convsync/schemas"
)

// Names inside a staging folder.
const (
	manifestFile   = "manifest.json"
	checkpointFile = "checkpoint.json"
	logFile        = "events.log"
	spoolDir       = "spool"
)

// Manifest says whose staging a folder is. It is written when the folder
// is created and never changes.
type Manifest struct {
	RunID   string `json:"run_id"`
	Command string `json:"command"`
	// Outputs names the outputs the run writes, as their locations.
	Outputs []string `json:"outputs"`
	// Fingerprint identifies the run's inputs; only a run with the same
	// fingerprint may resume this staging.
	Fingerprint string    `json:"fingerprint"`
	Created     time.Time `json:"created"`
}

// Checkpoint is the durable record of a run's progress.
type Checkpoint struct {
	RunID  string                `json:"run_id"`
	Tables map[string]TableState `json:"tables"`
	// State is the job's own state, opaque to the stage.
	State json.RawMessage `json:"state"`
	// LogBytes is how much of events.log the checkpoint vouches for.
	LogBytes int64 `json:"log_bytes"`
	// Finished is set by the checkpoint Finish takes: every table's
	// Parquet file is complete, and only publishing remains.
	Finished bool      `json:"finished"`
	Taken    time.Time `json:"taken"`

	// Log holds the job's log lines (read from events.log, not stored in
	// checkpoint.json).
	Log []string `json:"-"`
}

// TableState is what a checkpoint records of one table.
type TableState struct {
	Rows     int64     `json:"rows"`
	Segments []Segment `json:"segments,omitempty"`
	// ParquetBytes is the size of the complete Parquet file (Finished only).
	ParquetBytes int64 `json:"parquet_bytes,omitempty"`
}

// Options configures a stage.
type Options struct {
	RowGroupRows  int64 // default DefaultRowGroupRows
	RowGroupBytes int64 // default DefaultRowGroupBytes
	// Allocator for Arrow and Parquet buffers; memory.DefaultAllocator when nil.
	Allocator memory.Allocator
	// Spool keeps the IPC spool that checkpoints need; without it
	// Checkpoint fails and a failed run keeps nothing.
	Spool bool
	// KV is file-level key-value metadata for every Parquet file
	// (KVRunID and KVSnapshotDate, say).
	KV map[string]string
}

func (o Options) withDefaults() Options {
	if o.RowGroupRows <= 0 {
		o.RowGroupRows = DefaultRowGroupRows
	}
	if o.RowGroupBytes <= 0 {
		o.RowGroupBytes = DefaultRowGroupBytes
	}
	if o.Allocator == nil {
		o.Allocator = defaultAllocator
	}
	return o
}

// File is one table's complete Parquet file.
type File struct {
	// Path is the file's absolute path.
	Path string
	Rows int64
}

// Stage is a run's staging area. Write may be called concurrently for
// different tables; calls for the same table must not overlap.
type Stage struct {
	dir    string
	opts   Options
	order  []*table
	tables map[string]*table
	runID  string

	// state is held shared by Write and exclusively by Checkpoint, Finish
	// and Abort.
	state    sync.RWMutex
	ended    bool
	finished bool // files complete (Finish done, or resumed finished)
	logBytes int64
}

type table struct {
	mu       sync.Mutex
	t        schemas.Table
	pq       *parquetFile
	sp       *spool
	rows     int64
	prior    []Segment // segments of earlier attempts
	pqBytes  int64     // size of the complete file, once finished
	err      error     // sticky: the table is unusable after a failed write
	finished bool
}

// Create makes a new staging folder at dir (which must not exist) for the
// given tables.
func Create(dir string, tables []schemas.Table, m Manifest, o Options) (*Stage, error) {
	if err := checkTables(tables); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create staging folder: %w", err)
	}
	s := newStage(dir, tables, m.RunID, o)
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err == nil {
		err = WriteFileSynced(filepath.Join(dir, manifestFile), b)
	}
	if err == nil && s.opts.Spool {
		err = os.Mkdir(filepath.Join(dir, spoolDir), 0o755)
	}
	if err == nil {
		err = s.openFiles()
	}
	if err != nil {
		s.Abort()
		return nil, fmt.Errorf("create staging folder: %w", err)
	}
	return s, nil
}

func newStage(dir string, tables []schemas.Table, runID string, o Options) *Stage {
	s := &Stage{dir: dir, opts: o.withDefaults(), tables: map[string]*table{}, runID: runID}
	for _, t := range tables {
		tb := &table{t: t}
		if s.opts.Spool {
			tb.sp = &spool{dir: filepath.Join(dir, spoolDir), table: t.Name, schema: t.Schema, mem: s.opts.Allocator}
		}
		s.order = append(s.order, tb)
		s.tables[t.Name] = tb
	}
	return s
}

// openFiles creates every table's Parquet file.
func (s *Stage) openFiles() error {
	for _, tb := range s.order {
		pq, err := createParquet(s.parquetPath(tb.t.Name), tb.t, s.opts.KV, s.opts)
		if err != nil {
			return err
		}
		tb.pq = pq
	}
	return nil
}

func (s *Stage) parquetPath(table string) string { return filepath.Join(s.dir, table+".parquet") }

// Dir is the staging folder.
func (s *Stage) Dir() string { return s.dir }

// ReadManifest reads the manifest of the staging folder dir.
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, manifestFile), err)
	}
	return m, nil
}

// HasCheckpoint reports whether the staging folder dir holds a checkpoint.
func HasCheckpoint(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, checkpointFile))
	return err == nil
}

// ReadCheckpoint reads the checkpoint of the staging folder dir, with its
// log lines.
func ReadCheckpoint(dir string) (*Checkpoint, error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointFile))
	if err != nil {
		return nil, err
	}
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, checkpointFile), err)
	}
	if cp.LogBytes > 0 {
		f, err := os.Open(filepath.Join(dir, logFile))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sc := bufio.NewScanner(io.LimitReader(f, cp.LogBytes))
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			cp.Log = append(cp.Log, sc.Text())
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, logFile), err)
		}
	}
	return &cp, nil
}

// Resume reopens the staging folder dir of an interrupted run and returns
// it with its last checkpoint. Tables in keep continue from the checkpoint:
// their spools are cut back to it and replayed into new Parquet files
// (unless the checkpoint is Finished: then the complete files are used as
// they are). Every other table starts empty.
func Resume(dir string, tables []schemas.Table, keep []string, o Options) (*Stage, *Checkpoint, error) {
	if err := checkTables(tables); err != nil {
		return nil, nil, err
	}
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("resume: %w", err)
	}
	cp, err := ReadCheckpoint(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("resume: %w", err)
	}
	if cp.RunID != m.RunID {
		return nil, nil, fmt.Errorf("resume: checkpoint of run %s in the staging of run %s", cp.RunID, m.RunID)
	}
	o.Spool = true
	s := newStage(dir, tables, m.RunID, o)
	s.logBytes = cp.LogBytes
	if cp.Finished {
		err = s.reuseFinished(cp)
	} else {
		err = s.replayKept(cp, keep)
	}
	if err != nil {
		s.Abort()
		return nil, nil, fmt.Errorf("resume run %s: %w", m.RunID, err)
	}
	return s, cp, nil
}

// reuseFinished takes the complete Parquet files of a finished checkpoint.
func (s *Stage) reuseFinished(cp *Checkpoint) error {
	for _, tb := range s.order {
		ts, ok := cp.Tables[tb.t.Name]
		if !ok {
			return fmt.Errorf("the checkpoint has no table %s", tb.t.Name)
		}
		st, err := os.Stat(s.parquetPath(tb.t.Name))
		if err != nil {
			return err
		}
		if st.Size() != ts.ParquetBytes {
			return fmt.Errorf("%s.parquet has %d bytes, the checkpoint vouches for %d", tb.t.Name, st.Size(), ts.ParquetBytes)
		}
		tb.rows, tb.prior, tb.pqBytes, tb.finished = ts.Rows, ts.Segments, ts.ParquetBytes, true
	}
	s.finished = true
	return nil
}

// replayKept cuts the kept tables' spools back to the checkpoint, replays
// them into new Parquet files and removes everything else of theirs.
func (s *Stage) replayKept(cp *Checkpoint, keep []string) error {
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	if err := s.openFiles(); err != nil {
		return err
	}
	for _, tb := range s.order {
		var segs []Segment
		if kept[tb.t.Name] {
			segs = cp.Tables[tb.t.Name].Segments
		}
		if err := tb.sp.keepOnly(segs); err != nil {
			return err
		}
		err := replay(tb.sp.dir, tb.t.Name, segs, s.opts.Allocator, func(rec arrow.Record) error {
			rec, err := conform(tb.t.Schema, rec)
			if err != nil {
				return err
			}
			defer rec.Release()
			tb.rows += rec.NumRows()
			return tb.pq.write(rec)
		})
		if err != nil {
			return err
		}
		tb.prior = segs
		next := 0
		for _, sg := range segs {
			next = max(next, sg.N+1)
		}
		tb.sp.seg = Segment{N: next}
	}
	return nil
}

// keepOnly removes the table's segments not in segs and cuts those in
// segs back to the length the checkpoint vouches for.
func (sp *spool) keepOnly(segs []Segment) error {
	want := map[string]int64{}
	for _, sg := range segs {
		want[filepath.Base(segmentPath(sp.dir, sp.table, sg.N))] = sg.Bytes
	}
	entries, err := os.ReadDir(sp.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, sp.table+".") || !strings.HasSuffix(name, ".arrows") {
			continue
		}
		n, ok := want[name]
		if !ok {
			if err := os.Remove(filepath.Join(sp.dir, name)); err != nil {
				return err
			}
			continue
		}
		if err := os.Truncate(filepath.Join(sp.dir, name), n); err != nil {
			return err
		}
		delete(want, name)
	}
	for name := range want {
		return fmt.Errorf("checkpointed spool %s is missing", name)
	}
	return nil
}

// Rows returns the rows written so far per table (replayed ones included).
func (s *Stage) Rows() map[string]int64 {
	m := make(map[string]int64, len(s.order))
	for _, tb := range s.order {
		tb.mu.Lock()
		m[tb.t.Name] = tb.rows
		tb.mu.Unlock()
	}
	return m
}

// Finished reports whether the stage's files are complete, so that only
// publishing remains (a resumed run whose crawl had finished).
func (s *Stage) Finished() bool {
	s.state.RLock()
	defer s.state.RUnlock()
	return s.finished
}

// Write appends rec to table's Parquet file and spool. The caller keeps
// ownership of rec.
func (s *Stage) Write(ctx context.Context, table string, rec arrow.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.state.RLock()
	defer s.state.RUnlock()
	if s.ended || s.finished {
		return errors.New("stage: write after finish or abort")
	}
	tb, ok := s.tables[table]
	if !ok {
		return fmt.Errorf("stage: unknown table %q", table)
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.err != nil {
		return tb.err
	}
	rec, err := conform(tb.t.Schema, rec)
	if err != nil {
		return fmt.Errorf("write %s: %w", table, err)
	}
	defer rec.Release()
	if rec.NumRows() == 0 {
		return nil
	}
	if err := tb.pq.write(rec); err != nil {
		tb.err = fmt.Errorf("write %s: %w", table, err)
		return tb.err
	}
	if tb.sp != nil {
		if err := tb.sp.write(rec); err != nil {
			tb.err = fmt.Errorf("spool %s: %w", table, err)
			return tb.err
		}
	}
	tb.rows += rec.NumRows()
	return nil
}

// Checkpoint makes every batch written so far durable and records it with
// the job's state and log lines; it is an error when anything of it could
// not be made durable. No Write may be in flight.
func (s *Stage) Checkpoint(state []byte, log []string) error {
	s.state.Lock()
	defer s.state.Unlock()
	if s.ended || s.finished {
		return errors.New("stage: checkpoint after finish or abort")
	}
	if !s.opts.Spool {
		return errors.New("stage: checkpoints are off")
	}
	tables := make(map[string]TableState, len(s.order))
	for _, tb := range s.order {
		ts, err := tb.syncSpool()
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		tables[tb.t.Name] = ts
	}
	return s.writeCheckpoint(tables, state, log, false)
}

// syncSpool syncs the table's open spool segment and returns its state.
func (tb *table) syncSpool() (TableState, error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.err != nil {
		return TableState{}, tb.err
	}
	ts := TableState{Rows: tb.rows, Segments: append([]Segment(nil), tb.prior...)}
	seg, open, err := tb.sp.sync()
	if err != nil {
		tb.err = fmt.Errorf("spool %s: %w", tb.t.Name, err)
		return TableState{}, tb.err
	}
	if open {
		ts.Segments = append(ts.Segments, seg)
	}
	return ts, nil
}

// writeCheckpoint appends log to events.log, then replaces checkpoint.json.
func (s *Stage) writeCheckpoint(tables map[string]TableState, state []byte, log []string, finished bool) error {
	if len(log) > 0 {
		var buf bytes.Buffer
		for _, l := range log {
			if strings.ContainsAny(l, "\n") {
				return errors.New("checkpoint: log line with a newline")
			}
			buf.WriteString(l)
			buf.WriteByte('\n')
		}
		if err := appendAt(filepath.Join(s.dir, logFile), s.logBytes, buf.Bytes()); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		s.logBytes += int64(buf.Len())
	}
	b, err := json.Marshal(Checkpoint{RunID: s.runID, Tables: tables, State: state, LogBytes: s.logBytes,
		Finished: finished, Taken: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := ReplaceFileSynced(filepath.Join(s.dir, checkpointFile), b); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// appendAt writes data at offset off of the file at path, dropping what
// lay beyond off (bytes of a checkpoint that never completed), and syncs it.
func appendAt(path string, off int64, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	err = f.Truncate(off)
	if err == nil {
		_, err = f.WriteAt(data, off)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Finish completes every table's Parquet file (a table without rows gets
// a file with its schema and no rows) and returns them. With the spool
// on, it then records a finished checkpoint with state and log, so that a
// run whose publishing fails can be resumed without fetching again. The
// stage takes no writes afterwards.
func (s *Stage) Finish(state []byte, log []string) (map[string]File, error) {
	s.state.Lock()
	defer s.state.Unlock()
	if s.ended {
		return nil, errors.New("stage: finish after abort")
	}
	if !s.finished {
		for _, tb := range s.order {
			if err := tb.finish(s.parquetPath(tb.t.Name)); err != nil {
				return nil, err
			}
		}
		s.finished = true
		if s.opts.Spool {
			tables := make(map[string]TableState, len(s.order))
			for _, tb := range s.order {
				ts, err := tb.syncSpool()
				if err != nil {
					return nil, fmt.Errorf("checkpoint: %w", err)
				}
				ts.ParquetBytes = tb.pqBytes
				tables[tb.t.Name] = ts
			}
			if err := s.writeCheckpoint(tables, state, log, true); err != nil {
				return nil, err
			}
		}
	}
	files := make(map[string]File, len(s.order))
	for _, tb := range s.order {
		files[tb.t.Name] = File{Path: s.parquetPath(tb.t.Name), Rows: tb.rows}
	}
	return files, nil
}

func (tb *table) finish(path string) error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.err != nil {
		return tb.err
	}
	if tb.finished {
		return nil
	}
	if err := tb.pq.finish(); err != nil {
		tb.err = err
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tb.pqBytes, tb.finished = st.Size(), true
	return nil
}

// Abort stops the stage, closing its files without completing them. The
// folder stays; the caller removes it or keeps it for a resume.
func (s *Stage) Abort() {
	s.state.Lock()
	defer s.state.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	for _, tb := range s.order {
		tb.mu.Lock()
		if tb.pq != nil && !tb.finished {
			tb.pq.abort()
		}
		if tb.sp != nil {
			_ = tb.sp.close()
		}
		tb.mu.Unlock()
	}
}

func checkTables(tables []schemas.Table) error {
	if len(tables) == 0 {
		return errors.New("stage: no tables")
	}
	seen := map[string]bool{}
	for _, t := range tables {
		if t.Name == "" || strings.ContainsAny(t.Name, `/\.`+"\x00") {
			return fmt.Errorf("stage: invalid table name %q", t.Name)
		}
		if t.Schema == nil {
			return fmt.Errorf("stage: table %s has no schema", t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("stage: table %s given twice", t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}
