// Package dataset is the Parquet output of a run: one dataset per table,
// hive-partitioned by snapshot date, each partition one Parquet file,
//
//	<root>/<table>/snapshot_date=YYYY-MM-DD/part-00000.parquet
//	<root>/_runs/<run_id>.json
//
// so that read_parquet('<root>/<table>/**/*.parquet', hive_partitioning =
// true) reads a table. A publish replaces each partition in one atomic
// step, so a reader sees the old file or the new one, never a part or
// both, and writes the run record after the tables. Publishing is
// idempotent: a publish that a dead process left unfinished is completed
// by running it again.
package dataset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/convsync/convsync/internal/faultpoint"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/runs"
	"github.com/convsync/convsync/sink/stage"
)

// Names inside a dataset's root besides the table folders.
const (
	// RunsDir holds one <run_id>.json record per published run.
	RunsDir = "_runs"
	// PartFile is the name of a partition's one file.
	PartFile = "part-00000.parquet"
	// ControlDir holds convsync's own files (its lock, staging and
	// publish journals); it lies outside every table folder, so no dataset
	// glob sees it.
	ControlDir = ".convsync"
)

// ErrNotDataset is returned by Check for a root that cannot hold datasets.
var ErrNotDataset = errors.New("cannot be a Parquet dataset root")

// Partition is the folder name of a snapshot date's partition.
func Partition(date string) string { return "snapshot_date=" + date }

// Local is a dataset root in a local directory.
type Local struct {
	root string
	log  zerolog.Logger
}

// NewLocal returns the output for the dataset root dir.
func NewLocal(dir string, log zerolog.Logger) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &Local{root: abs, log: log.With().Str("output", "parquet").Str("dir", abs).Logger()}, nil
}

// Location is the dataset root's absolute path.
func (l *Local) Location() string { return l.root }

// ControlDir is the folder holding convsync's own files for this output.
func (l *Local) ControlDir() string { return filepath.Join(l.root, ControlDir) }

// Check refuses, before anything is fetched, a root that is not a
// directory or cannot be written; it creates a missing one (its parent
// must exist) and its control folder.
func (l *Local) Check(context.Context) error {
	st, err := os.Stat(l.root)
	switch {
	case errors.Is(err, os.ErrNotExist):
		parent := filepath.Dir(l.root)
		if pst, perr := os.Stat(parent); perr != nil || !pst.IsDir() {
			return fmt.Errorf("%w: folder %s does not exist", ErrNotDataset, parent)
		}
		if err := os.Mkdir(l.root, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %v", ErrNotDataset, err)
		}
	case err != nil:
		return fmt.Errorf("%w: %v", ErrNotDataset, err)
	case !st.IsDir():
		return fmt.Errorf("%w: %s is a file", ErrNotDataset, l.root)
	}
	ctl := filepath.Join(l.root, ControlDir)
	if err := os.MkdirAll(ctl, 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrNotDataset, err)
	}
	probe, err := os.CreateTemp(ctl, "write-check-*")
	if err != nil {
		return fmt.Errorf("%w: %s is not writable: %v", ErrNotDataset, l.root, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// Publish moves each table's staged file (files: table name to path) into
// its partition of date and then writes the run record. A table whose
// staged file is gone was published by an earlier attempt of the same
// publish and is left as it is.
func (l *Local) Publish(ctx context.Context, tables []schemas.Table, files map[string]string, run runs.Record) error {
	return publish(ctx, localFiles{l}, l.log, tables, files, run)
}

// localFiles puts a publish's files into a local dataset.
type localFiles struct{ l *Local }

func (f localFiles) putTable(_ context.Context, table, src string, run runs.Record) error {
	return f.l.publishTable(table, src, run)
}

func (f localFiles) putRunRecord(_ context.Context, run runs.Record, rec []byte) error {
	runsDir := filepath.Join(f.l.root, RunsDir)
	if err := mkdirSynced(runsDir); err != nil {
		return err
	}
	return stage.ReplaceFileSynced(filepath.Join(runsDir, run.RunID+".json"), rec)
}

// fileStore is where a publish puts a dataset's files: a local folder or a
// bucket.
type fileStore interface {
	// putTable makes the staged file src table's partition of run's date.
	putTable(ctx context.Context, table, src string, run runs.Record) error
	// putRunRecord writes run's record rec.
	putRunRecord(ctx context.Context, run runs.Record, rec []byte) error
}

// publish puts each table's staged file (staged: table name to path), then
// the run record, which says the tables before it are complete: the order
// of every dataset's publish. Each step can be repeated.
func publish(ctx context.Context, dst fileStore, log zerolog.Logger, tables []schemas.Table, staged map[string]string, run runs.Record) error {
	for _, t := range tables {
		src, ok := staged[t.Name]
		if !ok {
			return fmt.Errorf("no staged file for table %s", t.Name)
		}
		if err := faultpoint.Hit("parquet:" + t.Name); err != nil {
			return err
		}
		if err := dst.putTable(ctx, t.Name, src, run); err != nil {
			return fmt.Errorf("publish %s: %w", t.Name, err)
		}
	}
	if err := faultpoint.Hit("run-record"); err != nil {
		return err
	}
	rec, err := run.Marshal()
	if err != nil {
		return err
	}
	if err := dst.putRunRecord(ctx, run, rec); err != nil {
		return fmt.Errorf("write run record: %w", err)
	}
	for _, t := range tables {
		log.Info().Str("table", t.Name).Int64("rows", run.Rows[t.Name]).Str("snapshot_date", run.SnapshotDate).Msg("published")
	}
	return nil
}

// publishTable replaces table's partition of run's date with the staged
// file src: one rename of the file over the partition's file, or, when
// the partition holds other files too (an older layout), one atomic
// exchange of the whole partition folder.
func (l *Local) publishTable(table, src string, run runs.Record) error {
	tableDir := filepath.Join(l.root, table)
	part := filepath.Join(tableDir, Partition(run.SnapshotDate))
	exchange := filepath.Join(l.root, ControlDir, "exchange-"+run.RunID, table)
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		// Published already, unless an exchange was under way.
		return l.finishExchange(part, exchange, run.RunID)
	} else if err != nil {
		return err
	}
	if err := mkdirSynced(tableDir); err != nil {
		return err
	}
	others, err := otherFiles(part)
	if err != nil {
		return err
	}
	if len(others) == 0 {
		if err := mkdirSynced(part); err != nil {
			return err
		}
		return moveSynced(src, filepath.Join(part, PartFile))
	}
	// The partition holds files besides its one file: swap in a folder
	// holding just the new file.
	if err := os.MkdirAll(exchange, 0o755); err != nil {
		return err
	}
	if err := moveSynced(src, filepath.Join(exchange, PartFile)); err != nil {
		return err
	}
	return l.finishExchange(part, exchange, run.RunID)
}

// finishExchange completes a partition exchange: unless the partition
// already holds run runID's file, it swaps the prepared folder with it;
// then it removes what was swapped out.
func (l *Local) finishExchange(part, exchange, runID string) error {
	if _, err := os.Stat(exchange); errors.Is(err, os.ErrNotExist) {
		if id, err := fileRunID(filepath.Join(part, PartFile)); err != nil || id != runID {
			return fmt.Errorf("the staged file is gone and the partition does not hold run %s", runID)
		}
		return nil
	}
	if id, _ := fileRunID(filepath.Join(part, PartFile)); id != runID {
		if err := unix.Renameat2(unix.AT_FDCWD, exchange, unix.AT_FDCWD, part, unix.RENAME_EXCHANGE); err != nil {
			return fmt.Errorf("exchange %s: %w", part, err)
		}
		if err := stage.SyncDir(filepath.Dir(part)); err != nil {
			return err
		}
	}
	return os.RemoveAll(filepath.Dir(exchange))
}

// otherFiles lists the entries of a partition folder besides its one file.
func otherFiles(part string) ([]string, error) {
	entries, err := os.ReadDir(part)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Name() != PartFile {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// fileRunID reads the run ID from a Parquet file's key-value metadata.
func fileRunID(path string) (string, error) {
	r, err := file.OpenParquetFile(path, false)
	if err != nil {
		return "", err
	}
	defer r.Close()
	if v := r.MetaData().KeyValueMetadata().FindValue(stage.KVRunID); v != nil {
		return *v, nil
	}
	return "", nil
}

// moveSynced renames src to dst, replacing dst atomically, and syncs the
// rename. Across file systems it copies src to a temporary file beside dst
// (a name no dataset glob matches), syncs it and renames that.
func moveSynced(src, dst string) error {
	err := os.Rename(src, dst)
	if errors.Is(err, unix.EXDEV) {
		err = copyThenRename(src, dst)
	}
	if err != nil {
		return err
	}
	return stage.SyncDir(filepath.Dir(dst))
}

func copyThenRename(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp")
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Remove(src)
}

// mkdirSynced creates dir and any missing parents, syncing each parent
// whose entries changed.
func mkdirSynced(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirSynced(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return stage.SyncDir(filepath.Dir(dir))
}

// Prepare checks, before the publish decision, that the publish can go
// ahead (nothing to check for a local root: it was checked at the start).
func (l *Local) Prepare(context.Context) error { return nil }

// Close releases nothing: a local root holds no resource.
func (l *Local) Close() error { return nil }
