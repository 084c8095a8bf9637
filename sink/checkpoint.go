package sink

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
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/convsync/convsync/schemas"
)

// Checkpoints let an interrupted run continue where it stopped (export
// --resume). A run's staging folder then holds, besides the completed part
// files of each table:
//
//	checkpoint.json  the last checkpoint: run ID, completed parts and rows
//	                 per table, the job's opaque state, the length of done.log
//	done.log         keys of the work units finished, one a line, appended
//	                 at every checkpoint
//
// Both files are written so that a crash at any point leaves the previous
// checkpoint valid: done.log is appended and synced first, then
// checkpoint.json is replaced by rename.
const (
	checkpointFile = "checkpoint.json"
	doneFile       = "done.log"
)

// Checkpoint is the durable record of an interrupted run's progress.
type Checkpoint struct {
	RunID  string               `json:"run_id"`
	Tables map[string]PartState `json:"tables"`
	State  json.RawMessage      `json:"state"`
	// DoneBytes is how much of done.log the checkpoint vouches for.
	DoneBytes int64 `json:"done_bytes"`

	// Done holds the keys of finished work units (not stored in
	// checkpoint.json; read from done.log).
	Done []string `json:"-"`
}

// WithResume makes a new sink continue the staging of cp's run instead of
// starting empty: tables named in keep retain the parts cp vouches for and
// go on after them; all other staged data is discarded. The run ID given to
// the constructor must be cp.RunID.
func WithResume(cp *Checkpoint, keep []string) Option {
	return func(o *options) {
		o.resume = cp
		o.resumeKeep = keep
	}
}

// checkpointer is the checkpoint state shared by the sinks' staging.
type checkpointer struct {
	staging string
	doneLen int64
	// orphan is set for staging no later run can find (moved to the
	// temporary directory): a failed run then keeps nothing.
	orphan bool
}

// write records a checkpoint: done is appended to done.log, then
// checkpoint.json is replaced.
func (c *checkpointer) write(runID string, tables map[string]PartState, state []byte, done []string) error {
	if len(done) > 0 {
		var buf bytes.Buffer
		for _, k := range done {
			if strings.ContainsAny(k, "\n") {
				return fmt.Errorf("checkpoint: key with a newline")
			}
			buf.WriteString(k)
			buf.WriteByte('\n')
		}
		f, err := os.OpenFile(filepath.Join(c.staging, doneFile), os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		// Write at the vouched-for length: bytes after it (from a crash
		// between the two steps) are overwritten.
		if err := f.Truncate(c.doneLen); err == nil {
			_, err = f.WriteAt(buf.Bytes(), c.doneLen)
			if err == nil {
				err = f.Sync()
			}
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		c.doneLen += int64(buf.Len())
	}
	b, err := json.Marshal(Checkpoint{RunID: runID, Tables: tables, State: state, DoneBytes: c.doneLen})
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.staging, checkpointFile+".tmp")
	_ = os.Remove(tmp)
	if err := writeSynced(tmp, b); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(c.staging, checkpointFile)); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return syncDir(c.staging)
}

// exists reports whether a checkpoint a later run can resume was written.
func (c *checkpointer) exists() bool {
	_, err := os.Stat(filepath.Join(c.staging, checkpointFile))
	return err == nil && !c.orphan
}

// readCheckpoint reads the checkpoint in a staging folder.
func readCheckpoint(staging string) (*Checkpoint, error) {
	b, err := os.ReadFile(filepath.Join(staging, checkpointFile))
	if err != nil {
		return nil, err
	}
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(staging, checkpointFile), err)
	}
	if cp.DoneBytes > 0 {
		f, err := os.Open(filepath.Join(staging, doneFile))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sc := bufio.NewScanner(io.LimitReader(f, cp.DoneBytes))
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			cp.Done = append(cp.Done, sc.Text())
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return &cp, nil
}

// stagingDirs returns the staging folders of the output at pattern's
// location, newest name first.
func stagingDirs(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	sort.Sort(sort.Reverse(sort.StringSlice(m)))
	return m
}

// duckdbStagingGlob and parquetStagingGlob locate the staging folders of a
// DuckDB file and of a Parquet directory.
func duckdbStagingGlob(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return escapeGlob(abs) + stagingPrefix + "*", nil
}

func parquetStagingGlob(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return filepath.Join(escapeGlob(abs), stagingPrefix+"*"), nil
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// FindCheckpoint returns the newest checkpoint left by an interrupted run
// writing the DuckDB file at path (duckdb true) or the Parquet datasets
// under path, or nil when there is none.
func FindCheckpoint(path string, duckdb bool) (*Checkpoint, error) {
	glob, err := stagingGlob(path, duckdb)
	if err != nil {
		return nil, err
	}
	for _, dir := range stagingDirs(glob) {
		cp, err := readCheckpoint(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !strings.HasSuffix(dir, stagingPrefix+cp.RunID) {
			continue // not this folder's own checkpoint
		}
		return cp, nil
	}
	return nil, nil
}

// RemoveStaging deletes the staging folders that runs writing path left
// behind, except the one of run keepRunID ("" keeps none).
func RemoveStaging(path string, duckdb bool, keepRunID string) error {
	glob, err := stagingGlob(path, duckdb)
	if err != nil {
		return err
	}
	var errs []error
	for _, dir := range stagingDirs(glob) {
		if keepRunID != "" && strings.HasSuffix(dir, stagingPrefix+keepRunID) {
			continue
		}
		errs = append(errs, os.RemoveAll(dir))
	}
	return errors.Join(errs...)
}

func stagingGlob(path string, duckdb bool) (string, error) {
	if duckdb {
		return duckdbStagingGlob(path)
	}
	return parquetStagingGlob(path)
}

// openResumed checks that staging is the folder of the checkpoint in o.
func openResumed(staging, runID string, o options) error {
	if o.resume.RunID != runID {
		return fmt.Errorf("resume: checkpoint of run %s, sink of run %s", o.resume.RunID, runID)
	}
	if _, err := os.Stat(filepath.Join(staging, checkpointFile)); err != nil {
		return fmt.Errorf("resume run %s: %w", runID, err)
	}
	return nil
}

// resume prepares st to continue o.resume's run, keeping the tables in
// o.resumeKeep; without o.resume it does nothing.
func (c *checkpointer) resume(st *stage, o options) error {
	if o.resume == nil {
		return nil
	}
	prior := map[string]PartState{}
	for _, t := range o.resumeKeep {
		prior[t] = o.resume.Tables[t]
	}
	c.doneLen = o.resume.DoneBytes
	if err := st.resumeFrom(prior); err != nil {
		return fmt.Errorf("resume run %s: %w", o.resume.RunID, err)
	}
	return nil
}

// staged is what both sinks share: the run's staging, its checkpoints and
// the sink's lifecycle (mu guards committed and closed).
type staged struct {
	runID   string
	date    string // YYYY-MM-DD
	staging string
	st      *stage
	cp      *checkpointer

	mu        sync.Mutex
	committed bool
	closed    bool
}

// openStaged creates a run's staging folder, or reopens it to resume
// (WithResume), and prepares its stage; dirOf places each table's part
// files in it. With globFallback, a folder whose path holds glob
// characters is replaced by one in the temporary directory (such a run
// cannot be resumed).
func openStaged(staging string, globFallback bool, runID string, snapshotDate time.Time, tables []schemas.Table, o options,
	dirOf func(schemas.Table) string) (*staged, error) {
	var err error
	orphan := false
	switch {
	case o.resume != nil:
		err = openResumed(staging, runID, o)
	case globFallback && strings.ContainsAny(staging, "*?[]{}"):
		staging, err = os.MkdirTemp("", "convsync-staging-"+runID+"-")
		orphan = true
	default:
		err = os.Mkdir(staging, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("create staging folder: %w", err)
	}
	date := civilDate(snapshotDate)
	s := &staged{runID: runID, date: date, staging: staging, cp: &checkpointer{staging: staging, orphan: orphan}}
	s.st = newStage(staging, tables, map[string]string{KVRunID: runID, KVSnapshotDate: date}, o, dirOf)
	if err := s.cp.resume(s.st, o); err != nil {
		return nil, err
	}
	return s, nil
}

// Write appends rec to table's staged file. It may be called concurrently
// for different tables. The caller keeps ownership of rec.
func (s *staged) Write(ctx context.Context, table string, rec arrow.Record) error {
	return s.st.write(ctx, table, rec)
}

// finish checks that run may be committed into this sink, completes the
// staged files and returns run with its ID, date and row counts filled in.
// The caller holds mu.
func (s *staged) finish(ctx context.Context, run Run) (Run, error) {
	if s.closed || s.committed {
		return run, errors.New("commit after commit or close")
	}
	if err := ctx.Err(); err != nil {
		return run, err
	}
	if run.ID != "" && run.ID != s.runID {
		return run, fmt.Errorf("commit of run %s into the sink of run %s", run.ID, s.runID)
	}
	run.ID = s.runID
	if run.SnapshotDate.IsZero() {
		run.SnapshotDate, _ = time.Parse(time.DateOnly, s.date)
	}
	rows, err := s.st.finish()
	if err != nil {
		return run, err
	}
	return run.withRows(rows), nil
}

// Rotate completes table's current part file (see Checkpoint).
func (s *staged) Rotate(ctx context.Context, table string) error { return s.st.rotate(table) }

// Checkpoint records, in the staging folder, every part completed by
// Rotate, the job's state and the work units done since the last
// checkpoint, so that an interrupted run can be resumed (WithResume).
func (s *staged) Checkpoint(ctx context.Context, state []byte, done []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.committed {
		return errors.New("checkpoint after commit or close")
	}
	return s.cp.write(s.runID, s.st.snapshot(), state, done)
}

// suspend ends a failed run: with a checkpoint written, the staging stays
// for a later run to resume; without one, it is closeFn (Close).
func (s *staged) suspend(closeFn func() error) error {
	s.mu.Lock()
	if s.closed || s.committed || !s.cp.exists() {
		s.mu.Unlock()
		return closeFn()
	}
	defer s.mu.Unlock()
	s.closed = true
	return s.st.abort()
}
