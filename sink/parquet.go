package sink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/schemas"
)

// Names inside a Parquet sink's directory besides the table folders.
const (
	// RunsDir is the folder (DIR/_runs) holding one <runID>.json record
	// per committed run.
	RunsDir = "_runs"
	// stagingPrefix starts the name of a run's staging folder
	// (DIR/.convsync-staging-<runID>), which lies outside every table
	// folder so no dataset glob ever sees staged files.
	stagingPrefix = ".convsync-staging-"
)

// Parquet is a Sink writing one Parquet dataset per table:
//
//	DIR/<table>/snapshot_date=YYYY-MM-DD/part-00000.parquet
//
// so that read_parquet('DIR/<table>/**/*.parquet', hive_partitioning = true)
// reads a table with snapshot_date taken from the folder name (the files
// hold no snapshot_date column). Files are zstd-compressed, have a
// REQUIRED root, carry the Arrow schema with its convsync.* field metadata
// (ARROW:schema) and the key-value metadata KVTable, KVRunID,
// KVSnapshotDate and KVPII.
//
// Files are staged under DIR/.convsync-staging-<runID>/ and Commit swaps
// each table's partition folder into place, replacing the folder of the
// same snapshot date, if any, and leaving other dates alone; it then
// writes DIR/_runs/<runID>.json. Each partition is replaced by a rename,
// so a reader sees the old files or the new ones, never a partly written
// file.
type Parquet struct {
	*staged
	dir         string
	tables      []schemas.Table
	log         zerolog.Logger
	keepStaging bool // a failed Commit left old partitions in staging
}

// NewParquet prepares a Parquet sink under dir (created if missing) for
// tables, for the run runID filed under snapshotDate. Nothing is
// published before Commit.
func NewParquet(dir string, tables []schemas.Table, runID string, snapshotDate time.Time, opts ...Option) (*Parquet, error) {
	if err := checkName("run ID", runID); err != nil {
		return nil, err
	}
	if err := checkTables(tables); err != nil {
		return nil, err
	}
	o := newOptions(opts)
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	partition := "snapshot_date=" + civilDate(snapshotDate)
	sd, err := openStaged(filepath.Join(abs, stagingPrefix+runID), false, runID, snapshotDate, tables, o,
		func(t schemas.Table) string { return filepath.Join(t.Name, partition) })
	if err != nil {
		return nil, err
	}
	return &Parquet{
		staged: sd,
		dir:    abs,
		tables: tables,
		log:    o.log.With().Str("sink", "parquet").Str("dir", abs).Logger(),
	}, nil
}

// Suspend ends a run that failed: like Close, but when a checkpoint was
// written the staging folder stays for a later run to resume. Published
// datasets are not touched either way.
func (p *Parquet) Suspend() error { return p.suspend(p.Close) }

func (p *Parquet) partition() string { return "snapshot_date=" + p.date }

// Commit completes the staged files, swaps each table's partition folder
// into place and writes DIR/_runs/<runID>.json. If a swap fails, the
// partitions already swapped are put back.
func (p *Parquet) Commit(ctx context.Context, run Run) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	run, err := p.finish(ctx, run)
	if err != nil {
		return fmt.Errorf("parquet sink: %w", err)
	}
	rec, err := marshalRun(run)
	if err != nil {
		return err
	}
	// Stage the run record too, so publishing it is one rename (atomic).
	recTmp := filepath.Join(p.staging, "run.json")
	if err := writeSynced(recTmp, rec); err != nil {
		return fmt.Errorf("parquet sink: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	swaps, err := p.swap()
	if err == nil {
		err = p.publishRun(recTmp)
	}
	if err != nil {
		if rerr := p.rollback(swaps); rerr != nil {
			p.keepStaging = true
			p.log.Error().Err(rerr).Str("staging", p.staging).Msg("rollback failed: replaced partitions kept in staging folder")
			err = errors.Join(err, rerr)
		}
		return fmt.Errorf("parquet sink: commit: %w", err)
	}
	p.committed = true
	if err := os.RemoveAll(p.staging); err != nil {
		// The run is published; a leftover staging folder is outside
		// every dataset and harmless.
		p.log.Warn().Err(err).Str("staging", p.staging).Msg("remove staging folder")
	}
	for _, t := range p.tables {
		p.log.Info().Str("table", t.Name).Int64("rows", run.Rows[t.Name]).Str("snapshot_date", p.date).Msg("published")
	}
	return nil
}

// swapped records one partition published by Commit: dst now holds the
// run's files; old, if not empty, holds the folder it replaced.
type swapped struct{ dst, old string }

// swap moves each table's staged partition into place, moving a partition
// of the same date aside into the staging folder first.
func (p *Parquet) swap() ([]swapped, error) {
	aside := filepath.Join(p.staging, ".replaced")
	if err := os.Mkdir(aside, 0o755); err != nil {
		return nil, err
	}
	var done []swapped
	for _, t := range p.tables {
		tableDir := filepath.Join(p.dir, t.Name)
		if err := os.MkdirAll(tableDir, 0o755); err != nil {
			return done, err
		}
		src := filepath.Join(p.staging, t.Name, p.partition())
		s := swapped{dst: filepath.Join(tableDir, p.partition())}
		if _, err := os.Lstat(s.dst); err == nil {
			s.old = filepath.Join(aside, t.Name)
			if err := os.Rename(s.dst, s.old); err != nil {
				return done, err
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return done, err
		}
		if err := os.Rename(src, s.dst); err != nil {
			if s.old != "" {
				if rerr := os.Rename(s.old, s.dst); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
			return done, err
		}
		done = append(done, s)
		if err := syncDir(tableDir); err != nil {
			return done, err
		}
	}
	return done, nil
}

// rollback undoes swaps, newest first.
func (p *Parquet) rollback(swaps []swapped) error {
	var errs []error
	for i := len(swaps) - 1; i >= 0; i-- {
		s := swaps[i]
		if err := os.RemoveAll(s.dst); err != nil {
			errs = append(errs, err)
			continue
		}
		if s.old != "" {
			if err := os.Rename(s.old, s.dst); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// publishRun renames the staged run record to DIR/_runs/<runID>.json.
func (p *Parquet) publishRun(tmp string) error {
	runs := filepath.Join(p.dir, RunsDir)
	if err := os.MkdirAll(runs, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(runs, p.runID+".json")); err != nil {
		return err
	}
	return syncDir(runs)
}

// Close ends the sink. Without a successful Commit it removes everything
// staged, and nothing else. It is idempotent and joins errors.
func (p *Parquet) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.committed {
		return nil
	}
	errs := []error{p.st.abort()}
	if !p.keepStaging {
		errs = append(errs, os.RemoveAll(p.staging))
	}
	return errors.Join(errs...)
}
