// Package sink publishes a run's tables into its outputs — a DuckDB
// database file, a Parquet dataset root, or both — as one transaction.
//
// Open takes a lock on every output for the whole run (a second run on
// the same outputs is refused with ErrBusy), first finishes any publish a
// dead process left half done on them, and prepares the run's staging
// (package stage), new or resumed. The run writes its batches and
// checkpoints through Outputs; nothing a reader can see changes.
//
// Publish then completes the staged files and makes one decision: it
// prepares everything that can fail (the DuckDB transaction, with every
// statement run), then writes a publish journal into the staging and syncs
// it. Before the journal exists a failure or a signal rolls everything
// back; once it exists the run is published: the DuckDB transaction is
// committed, each Parquet partition is replaced, the run records are
// written, whatever signal arrives. If the process dies on the way, the
// next convsync command on any of those outputs reads the journal and
// carries the publish out again (each step is idempotent) before it does
// anything else, so DuckDB and Parquet never disagree about the latest
// run except within that window.
package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/internal/faultpoint"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/dataset"
	"github.com/convsync/convsync/sink/duckdb"
	"github.com/convsync/convsync/sink/lock"
	"github.com/convsync/convsync/sink/runs"
	"github.com/convsync/convsync/sink/stage"
)

// ErrBusy is wrapped by the errors of a run refused because another run
// holds one of its outputs, or because a DuckDB reader kept the file
// locked past the lock wait: nothing was changed, and trying again later
// is right.
var ErrBusy = lock.ErrBusy

// ErrBadOutput is wrapped by the errors of an output that cannot be
// written as asked (a --duckdb path that is not a DuckDB database, a
// Parquet root that is a file or cannot be written), found before
// anything is fetched.
var ErrBadOutput = errors.New("unusable output")

// Config says what a run writes where.
type Config struct {
	// DuckDB is the database file to write, or "".
	DuckDB string
	// Parquet is the dataset root to write (a local directory), or "".
	Parquet string
	// Staging is the folder under which the run stages its files; by
	// default the Parquet root's control folder, or beside the DuckDB file.
	Staging string
	// History keeps every snapshot in DuckDB (duckdb.Options.History).
	History bool
	// LockWait is how long a publish waits for a DuckDB file another
	// process holds open.
	LockWait time.Duration

	Command      string // export or lookup
	RunID        string
	SnapshotDate time.Time
	Tables       []schemas.Table
	// Fingerprint identifies the run's inputs: only staging of the same
	// fingerprint is resumed.
	Fingerprint string
	// Checkpoints keeps what checkpoints need (stage.Options.Spool).
	Checkpoints bool
	// Resume continues the newest interrupted run of the same fingerprint,
	// if there is one; Keep lists the tables it keeps.
	Resume bool
	Keep   []string

	Allocator     memory.Allocator
	RowGroupRows  int64
	RowGroupBytes int64
	Logger        zerolog.Logger
}

// parquetOutput is a Parquet dataset root: a local directory or a bucket.
type parquetOutput interface {
	Location() string
	ControlDir() string
	Check(ctx context.Context) error
	// Prepare checks, just before the publish decision, that the publish
	// can go ahead.
	Prepare(ctx context.Context) error
	Publish(ctx context.Context, tables []schemas.Table, files map[string]string, run runs.Record) error
	Close() error
}

// leaser is an output that also holds a lease of its own, beyond the
// local lock (a bucket, against runs on other machines).
type leaser interface {
	Lease(ctx context.Context, runID string) error
}

// Outputs is one run's transaction over its outputs.
type Outputs struct {
	cfg     Config
	log     zerolog.Logger
	duck    *duckdb.Target
	pq      parquetOutput
	locks   []*held
	st      *stage.Stage
	resumed *stage.Checkpoint

	decided   atomic.Bool
	published bool
	closed    bool
}

// Open checks and locks the outputs, finishes a publish a dead process
// left on them, cleans up staging no live run holds, and prepares the
// run's staging (resuming an interrupted run when cfg.Resume finds one).
func Open(ctx context.Context, cfg Config) (_ *Outputs, err error) {
	if cfg.DuckDB == "" && cfg.Parquet == "" {
		return nil, errors.New("no output")
	}
	o := &Outputs{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			o.releaseLocks()
		}
	}()
	date := runs.Date(cfg.SnapshotDate)
	if cfg.DuckDB != "" {
		if o.duck, err = duckdb.New(cfg.DuckDB, duckdb.Options{History: cfg.History, LockWait: cfg.LockWait, Logger: cfg.Logger}); err != nil {
			return nil, fmt.Errorf("%w: DuckDB file %s: %w", ErrBadOutput, cfg.DuckDB, err)
		}
		if err := o.duck.Check(ctx, date); err != nil {
			if errors.Is(err, duckdb.ErrHistoryDate) || errors.Is(err, duckdb.ErrNotDuckDB) {
				return nil, fmt.Errorf("%w: %w", ErrBadOutput, err)
			}
			return nil, err
		}
	}
	if cfg.Parquet != "" {
		if o.pq, err = openParquet(cfg.Parquet, controlRoot(cfg.Staging), cfg.Logger); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadOutput, err)
		}
		if err := o.pq.Check(ctx); err != nil {
			if errors.Is(err, ErrBusy) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", ErrBadOutput, err)
		}
	}
	for _, out := range o.outputs() {
		l, err := acquire(out, holder{RunID: cfg.RunID, Command: cfg.Command, PID: os.Getpid(), Since: time.Now().UTC()})
		if err != nil {
			return nil, err
		}
		o.locks = append(o.locks, l)
	}
	if l, ok := o.pq.(leaser); ok {
		if err := l.Lease(ctx, cfg.RunID); err != nil {
			return nil, fmt.Errorf("output %s is busy: %w", o.pq.Location(), err)
		}
	}
	if err := o.recover(ctx); err != nil {
		return nil, err
	}
	if err := o.prepareStaging(ctx); err != nil {
		return nil, err
	}
	return o, nil
}

// output is one output's identity and control folder (its lock, publish
// pointers and, by default, staging).
type output struct {
	location string
	control  string
}

func (o *Outputs) outputs() []output {
	var out []output
	if o.duck != nil {
		out = append(out, output{o.duck.Path(), o.duck.Path() + ".convsync"})
	}
	if o.pq != nil {
		out = append(out, output{o.pq.Location(), o.pq.ControlDir()})
	}
	return out
}

func (o *Outputs) locations() []string {
	var out []string
	for _, x := range o.outputs() {
		out = append(out, x.location)
	}
	return out
}

// openParquet returns the dataset root at location: a bucket URL or a
// local directory. A bucket's control folder lies under controlRoot.
func openParquet(location, controlRoot string, log zerolog.Logger) (parquetOutput, error) {
	if dataset.IsBucketURL(location) {
		return dataset.NewBucket(location, controlRoot, log)
	}
	if strings.Contains(location, "://") {
		return nil, fmt.Errorf("%s: not a local directory nor a bucket URL (s3://, gs://, azblob://)", location)
	}
	return dataset.NewLocal(location, log)
}

// controlRoot is where the control folders of bucket outputs lie: the
// staging folder given, or the user's cache directory.
func controlRoot(staging string) string {
	if staging != "" {
		if abs, err := filepath.Abs(staging); err == nil {
			return abs
		}
		return staging
	}
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "convsync")
	}
	return filepath.Join(os.TempDir(), "convsync")
}

// holder says which run holds an output's lock; it is kept beside the
// lock while the run holds it, so that a refused run can name it.
type holder struct {
	RunID   string    `json:"run_id"`
	Command string    `json:"command"`
	PID     int       `json:"pid"`
	Since   time.Time `json:"since"`
}

const holderFile = "holder.json"

// held is an output's lock and where its holder file is.
type held struct {
	l      *lock.File
	holder string
}

// acquire takes an output's lock, creating its control folder, and
// records the holder. A refusal names the output and the run holding it.
func acquire(out output, h holder) (*held, error) {
	if err := os.MkdirAll(out.control, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadOutput, out.location, err)
	}
	path := filepath.Join(out.control, holderFile)
	l, err := lock.Acquire(filepath.Join(out.control, "lock"))
	if err != nil {
		var cur holder
		if b, rerr := os.ReadFile(path); rerr == nil && json.Unmarshal(b, &cur) == nil && cur.RunID != "" {
			return nil, fmt.Errorf("output %s is busy: %w (%s run %s, pid %d, since %s)", out.location, err,
				cur.Command, cur.RunID, cur.PID, cur.Since.Format(time.RFC3339))
		}
		return nil, fmt.Errorf("output %s is busy: %w", out.location, err)
	}
	// Who holds it is information for a refused run; failing to record it
	// does not weaken the lock.
	if b, err := json.Marshal(h); err == nil {
		_ = os.WriteFile(path, b, 0o644)
	}
	return &held{l: l, holder: path}, nil
}

func (h *held) release() {
	_ = os.Remove(h.holder)
	_ = h.l.Release()
}

func (o *Outputs) releaseLocks() {
	for _, l := range o.locks {
		l.release()
	}
	o.locks = nil
}

// Resumed returns the checkpoint the run continues from, or nil for a
// new run.
func (o *Outputs) Resumed() *stage.Checkpoint { return o.resumed }

// RunID is the run's ID: the configured one, or the resumed run's.
func (o *Outputs) RunID() string {
	if o.resumed != nil {
		return o.resumed.RunID
	}
	return o.cfg.RunID
}

// Staging is the run's staging folder.
func (o *Outputs) Staging() string { return o.st.Dir() }

// Write stages rec for table.
func (o *Outputs) Write(ctx context.Context, table string, rec arrow.Record) error {
	return o.st.Write(ctx, table, rec)
}

// Checkpoint makes everything written durable, with the job's state and
// log lines, for a later resume.
func (o *Outputs) Checkpoint(_ context.Context, state []byte, log []string) error {
	return o.st.Checkpoint(state, log)
}

// Rows returns the rows staged so far per table.
func (o *Outputs) Rows() map[string]int64 { return o.st.Rows() }

// Decided reports whether the run's publish decision has been made: from
// then on the run is published, whatever happens to this process.
func (o *Outputs) Decided() bool { return o.decided.Load() }

// Publish completes the staged files and publishes them into every
// output as one decision (see the package documentation). state and log
// go into the staging's last checkpoint, so that a publish that fails
// before the decision can be resumed without fetching again. It returns
// run with the rows per table filled in. Once the decision is made, ctx
// no longer stops it.
func (o *Outputs) Publish(ctx context.Context, run runs.Record, state []byte, log []string) (runs.Record, error) {
	files, err := o.st.Finish(state, log)
	if err == nil {
		err = faultpoint.Hit("finish")
	}
	if err != nil {
		return run, err
	}
	run, j := o.journal(run, files)
	prepared, err := o.prepare(ctx, j)
	if err != nil {
		return run, err
	}
	if err := j.write(); err != nil {
		o.abandon(prepared, run.RunID)
		return run, fmt.Errorf("write the publish decision: %w", err)
	}
	o.decided.Store(true)
	o.log.Debug().Str("run_id", run.RunID).Msg("publish decided")
	if err := faultpoint.Hit("decided"); err != nil {
		if prepared != nil {
			prepared.Rollback()
		}
		return run, fmt.Errorf("%w: %w", errIncomplete, err)
	}
	if prepared != nil {
		err := prepared.Commit()
		if err == nil {
			err = faultpoint.Hit("duckdb-commit")
		}
		if err != nil {
			return run, fmt.Errorf("%w: %w", errIncomplete, err)
		}
	}
	if err := o.carryOut(context.WithoutCancel(ctx), j, o.pq, false); err != nil {
		return run, fmt.Errorf("%w: %w", errIncomplete, err)
	}
	o.published = true
	return run, nil
}

// journal returns run filled in with the staged files' rows and the
// journal entry that records its publish decision.
func (o *Outputs) journal(run runs.Record, files map[string]stage.File) (runs.Record, *journal) {
	run.RunID = o.RunID()
	run.SnapshotDate = runs.Date(o.cfg.SnapshotDate)
	run.Status = runs.Succeeded
	run.Rows = map[string]int64{}
	paths := map[string]string{}
	for name, f := range files {
		run.Rows[name] = f.Rows
		paths[name] = f.Path
	}
	j := &journal{RunID: run.RunID, Staging: o.st.Dir(), Tables: tableNames(o.cfg.Tables), Files: paths, Run: run}
	if o.duck != nil {
		j.DuckDB = &journalDuckDB{Path: o.duck.Path(), History: o.cfg.History}
	}
	if o.pq != nil {
		j.Parquet, j.ParquetControl = o.pq.Location(), o.pq.ControlDir()
	}
	return run, j
}

// prepare readies every output for the decision j records: the pointers
// to it in the outputs' control folders, DuckDB's transaction with every
// change, the Parquet output's checks. On failure it undoes what it did;
// the outputs are as they were.
func (o *Outputs) prepare(ctx context.Context, j *journal) (*duckdb.Prepared, error) {
	if err := writePointers(o.outputs(), j); err != nil {
		return nil, err
	}
	var prepared *duckdb.Prepared
	fail := func(err error) (*duckdb.Prepared, error) {
		o.abandon(prepared, j.RunID)
		return nil, err
	}
	if err := faultpoint.Hit("pointers"); err != nil {
		return fail(err)
	}
	if o.duck != nil {
		// The crawl's pages, batches and row groups are garbage now: hand
		// their memory back to the system before DuckDB allocates its own,
		// so that the two peaks do not add up.
		debug.FreeOSMemory()
		p, err := o.duck.Prepare(ctx, o.cfg.Tables, j.Files, j.Run)
		if err != nil {
			return fail(fmt.Errorf("duckdb %s: %w", o.duck.Path(), err))
		}
		prepared = p
	}
	if o.pq != nil {
		if err := o.pq.Prepare(ctx); err != nil {
			return fail(err)
		}
	}
	if err := faultpoint.Hit("prepare"); err != nil {
		return fail(err)
	}
	if ctx.Err() != nil {
		return fail(context.Cause(ctx))
	}
	return prepared, nil
}

// abandon gives up a publish before its decision: DuckDB's transaction is
// rolled back and the pointers removed.
func (o *Outputs) abandon(p *duckdb.Prepared, runID string) {
	if p != nil {
		p.Rollback()
	}
	removePointers(o.outputs(), runID)
}

// errIncomplete marks a publish that was decided but not carried out.
var errIncomplete = errors.New("the run is published but writing it out did not complete (the next convsync run on these outputs completes it)")

// Close ends the run. After a publish it only releases the locks. Without
// one, it stops the stage and, unless a checkpoint in it can be resumed,
// removes the staging; published outputs are never touched.
func (o *Outputs) Close() error {
	if o.closed {
		return nil
	}
	o.closed = true
	defer o.releaseLocks()
	if o.pq != nil {
		defer o.pq.Close()
	}
	if o.st == nil || o.published {
		return nil
	}
	o.st.Abort()
	if o.decided.Load() || (o.cfg.Checkpoints && stage.HasCheckpoint(o.st.Dir())) {
		return nil // rolled forward, or resumed, by a later run
	}
	return removeStaging(o.st.Dir())
}

// Resumable reports whether a closed run left a checkpoint that
// `export --resume` can continue from.
func (o *Outputs) Resumable() bool {
	return o.st != nil && !o.published && !o.decided.Load() && o.cfg.Checkpoints && stage.HasCheckpoint(o.st.Dir())
}

func tableNames(ts []schemas.Table) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Recover finishes a publish that a dead process decided but left half
// done on the outputs named in cfg (DuckDB, Parquet, LockWait and Logger
// are used), so that a command that only reads them sees them agree. An
// output another live run holds is left to that run, which finishes such
// a publish itself when it starts.
func Recover(ctx context.Context, cfg Config) error {
	o := &Outputs{cfg: cfg, log: cfg.Logger}
	defer o.releaseLocks()
	if cfg.DuckDB != "" {
		d, err := duckdb.New(cfg.DuckDB, duckdb.Options{LockWait: cfg.LockWait, Logger: cfg.Logger})
		if err != nil {
			return err
		}
		if _, err := os.Stat(d.Path()); err != nil {
			return nil // nothing was ever written here
		}
		o.duck = d
	}
	if cfg.Parquet != "" {
		pq, err := openParquet(cfg.Parquet, controlRoot(cfg.Staging), cfg.Logger)
		if err != nil {
			return err
		}
		defer pq.Close()
		if _, err := os.Stat(pq.ControlDir()); err != nil {
			o.pq = nil
		} else {
			o.pq = pq
		}
	}
	for _, out := range o.outputs() {
		if _, err := os.Stat(filepath.Join(out.control, pendingDir)); err != nil {
			continue
		}
		l, err := acquire(out, holder{RunID: "recover", Command: "recover", PID: os.Getpid(), Since: time.Now().UTC()})
		if errors.Is(err, ErrBusy) {
			return nil
		}
		if err != nil {
			return err
		}
		o.locks = append(o.locks, l)
	}
	if len(o.locks) == 0 {
		return nil
	}
	return o.recover(ctx)
}
