// Package sink publishes the Arrow record batches of a run as Parquet
// datasets and/or tables of a DuckDB database file.
//
// A sink stages everything a run writes and publishes it only on Commit:
// before Commit nothing a reader can see changes, and Close without Commit
// removes what was staged and leaves the outputs of the last good run
// byte-for-byte as they were. Batches are streamed to Parquet files as they
// arrive, so memory stays bounded by one row group per table however many
// rows a run writes.
//
// Write may be called concurrently for different tables (one goroutine per
// table); calls for the same table must not overlap.
package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/rs/zerolog"
)

// Sink receives the record batches of one run and publishes them on Commit.
// *Parquet, *DuckDB and the result of Multi implement it.
type Sink interface {
	// Write appends rec to table. The caller keeps ownership of rec.
	Write(ctx context.Context, table string, rec arrow.Record) error
	// Commit publishes everything written and records run.
	Commit(ctx context.Context, run Run) error
	// Close releases resources; without a prior Commit it discards
	// everything staged. It is idempotent.
	Close() error
	// Rotate completes table's current part file, so that everything
	// written to it so far is durable.
	Rotate(ctx context.Context, table string) error
	// Checkpoint records the completed parts, the job's state and the
	// work units done since the last checkpoint, for a later resume.
	Checkpoint(ctx context.Context, state []byte, done []string) error
	// Suspend ends a failed run: like Close, but a checkpointed run's
	// staging is kept for a later resume.
	Suspend() error
}

// Run is what a run records about itself; sinks write it on Commit (a
// JSON file under DIR/_runs for Parquet, a row of the runs table for DuckDB).
type Run struct {
	// ID identifies the run, e.g. "20261122T041500Z-3f9a1c"; unique per run.
	ID string
	// Command is "export" or "lookup".
	Command string
	// SnapshotDate is the civil date (UTC midnight) the snapshot is filed under.
	SnapshotDate time.Time
	// Started and Ended bound the run.
	Started, Ended time.Time
	// Status is "succeeded" for a committed run.
	Status string
	// PII is the PII mode of the run: keep, hash or redact.
	PII string
	// Rows counts the rows written per table. Tables the sink wrote that
	// are missing here are filled in from the sink's own counts.
	Rows map[string]int64
	// Requests, Retries and ParentsSkipped count API requests, retried
	// requests, and parents whose child list was gone (404) during the run.
	Requests, Retries, ParentsSkipped int64
	// Services lists the service SIDs walked.
	Services []string
}

// runRecord is the JSON form of Run (snake_case keys, civil snapshot date).
type runRecord struct {
	RunID          string           `json:"run_id"`
	Command        string           `json:"command"`
	SnapshotDate   string           `json:"snapshot_date"`
	StartedAt      time.Time        `json:"started_at"`
	EndedAt        time.Time        `json:"ended_at"`
	Status         string           `json:"status"`
	PII            string           `json:"pii"`
	Rows           map[string]int64 `json:"rows"`
	Requests       int64            `json:"requests"`
	Retries        int64            `json:"retries"`
	ParentsSkipped int64            `json:"parents_skipped"`
	Services       []string         `json:"services"`
}

func (r Run) record() runRecord {
	rows := r.Rows
	if rows == nil {
		rows = map[string]int64{}
	}
	services := r.Services
	if services == nil {
		services = []string{}
	}
	return runRecord{
		RunID:          r.ID,
		Command:        r.Command,
		SnapshotDate:   civilDate(r.SnapshotDate),
		StartedAt:      r.Started.UTC(),
		EndedAt:        r.Ended.UTC(),
		Status:         r.Status,
		PII:            r.PII,
		Rows:           rows,
		Requests:       r.Requests,
		Retries:        r.Retries,
		ParentsSkipped: r.ParentsSkipped,
		Services:       services,
	}
}

// withRows returns run with Rows completed from counts for every table the
// sink wrote that the caller did not report.
func (r Run) withRows(counts map[string]int64) Run {
	rows := make(map[string]int64, len(r.Rows)+len(counts))
	for k, v := range r.Rows {
		rows[k] = v
	}
	for k, v := range counts {
		if _, ok := rows[k]; !ok {
			rows[k] = v
		}
	}
	r.Rows = rows
	return r
}

// civilDate formats t's UTC calendar date as YYYY-MM-DD.
func civilDate(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// Option configures a sink.
type Option func(*options)

type options struct {
	rowGroupRows  int64
	rowGroupBytes int64
	log           zerolog.Logger
	mem           memory.Allocator
	history       bool
	resume        *Checkpoint
	resumeKeep    []string
}

// Defaults for the Parquet files a sink writes.
const (
	// DefaultRowGroupRows is the most rows a Parquet row group holds.
	DefaultRowGroupRows = 128 * 1024
	// DefaultRowGroupBytes bounds the data a row group buffers in memory
	// before it is flushed, measured as the Arrow size of the batches
	// written into it, so wide rows with large strings cannot make a row
	// group grow without bound.
	DefaultRowGroupBytes = 64 << 20
)

func newOptions(opts []Option) options {
	o := options{
		rowGroupRows:  DefaultRowGroupRows,
		rowGroupBytes: DefaultRowGroupBytes,
		log:           zerolog.Nop(),
		mem:           memory.DefaultAllocator,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithRowGroupRows sets the most rows per Parquet row group (default
// DefaultRowGroupRows). Values below 1 are ignored.
func WithRowGroupRows(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.rowGroupRows = n
		}
	}
}

// WithRowGroupBytes starts a new Parquet row group once the batches
// written into the open one reach n bytes of Arrow data (default
// DefaultRowGroupBytes); a row group ends at the first batch that reaches
// the limit.
// Values below 1 are ignored.
func WithRowGroupBytes(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.rowGroupBytes = n
		}
	}
}

// WithLogger sets the logger the sink reports to (default: none).
func WithLogger(l zerolog.Logger) Option {
	return func(o *options) { o.log = l }
}

// WithAllocator sets the Arrow allocator used for Parquet encoding
// (default memory.DefaultAllocator).
func WithAllocator(mem memory.Allocator) Option {
	return func(o *options) {
		if mem != nil {
			o.mem = mem
		}
	}
}

// writeSynced writes data to a new file at path and syncs it to disk.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir flushes a directory's entries (renames, creations) to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems do not support syncing directories.
	if errors.Is(err, os.ErrInvalid) {
		return nil
	}
	return err
}

func marshalRun(run Run) ([]byte, error) {
	b, err := json.MarshalIndent(run.record(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode run record: %w", err)
	}
	return append(b, '\n'), nil
}

// Multi returns a Sink that fans Write, Commit and Close out to sinks.
//
// Commit commits every *DuckDB sink first and the others after, each in
// the order given, and stops at the first failure: a DuckDB commit is a
// transaction that can fail on many grounds (constraints, disk, a locked
// file) and then leaves everything as it was, whereas a Parquet commit is
// a few renames inside one directory that rarely fail. Committing the
// likelier failure first keeps the outputs consistent in the common case.
// Close closes every sink and joins their errors.
func Multi(sinks ...Sink) Sink {
	ordered := make([]Sink, 0, len(sinks))
	for _, s := range sinks {
		if _, ok := s.(*DuckDB); ok {
			ordered = append(ordered, s)
		}
	}
	for _, s := range sinks {
		if _, ok := s.(*DuckDB); !ok {
			ordered = append(ordered, s)
		}
	}
	return &multi{sinks: sinks, commitOrder: ordered}
}

type multi struct {
	sinks       []Sink
	commitOrder []Sink
}

// Write writes rec to every sink, stopping at the first error.
func (m *multi) Write(ctx context.Context, table string, rec arrow.Record) error {
	for _, s := range m.sinks {
		if err := s.Write(ctx, table, rec); err != nil {
			return err
		}
	}
	return nil
}

// Commit commits the DuckDB sinks, then the others, stopping at the first error.
func (m *multi) Commit(ctx context.Context, run Run) error {
	for _, s := range m.commitOrder {
		if err := s.Commit(ctx, run); err != nil {
			return err
		}
	}
	return nil
}

// Close closes every sink and joins their errors.
func (m *multi) Close() error {
	var errs []error
	for _, s := range m.sinks {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// Rotate rotates table in every sink, stopping at the first error.
func (m *multi) Rotate(ctx context.Context, table string) error {
	for _, s := range m.sinks {
		if err := s.Rotate(ctx, table); err != nil {
			return err
		}
	}
	return nil
}

// Checkpoint checkpoints every sink, stopping at the first error.
func (m *multi) Checkpoint(ctx context.Context, state []byte, done []string) error {
	for _, s := range m.sinks {
		if err := s.Checkpoint(ctx, state, done); err != nil {
			return err
		}
	}
	return nil
}

// Suspend suspends every sink and joins their errors.
func (m *multi) Suspend() error {
	var errs []error
	for _, s := range m.sinks {
		errs = append(errs, s.Suspend())
	}
	return errors.Join(errs...)
}
