package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/convsync/convsync/internal/faultpoint"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/duckdb"
	"github.com/convsync/convsync/sink/runs"
	"github.com/convsync/convsync/sink/stage"
)

// A publish is decided by its journal, written into the run's staging
// and synced before anything visible changes. Each output's control
// folder also holds a pointer to the staging (pending/<run_id>.json),
// written just before the journal, so that a later command on any one of
// the outputs finds a publish left half done.
const (
	journalFile = "publish.json"
	pendingDir  = "pending"
)

type journal struct {
	RunID   string         `json:"run_id"`
	Staging string         `json:"staging"`
	DuckDB  *journalDuckDB `json:"duckdb,omitempty"`
	Parquet string         `json:"parquet,omitempty"`
	// ParquetControl is the Parquet output's control folder (for a bucket,
	// it depends on the staging root of the run).
	ParquetControl string            `json:"parquet_control,omitempty"`
	Tables         []string          `json:"tables"`
	Files          map[string]string `json:"files"`
	Run            runs.Record       `json:"run"`
}

type journalDuckDB struct {
	Path    string `json:"path"`
	History bool   `json:"history"`
}

func (j *journal) write() error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return stage.ReplaceFileSynced(filepath.Join(j.Staging, journalFile), b)
}

func readJournal(staging string) (*journal, error) {
	b, err := os.ReadFile(filepath.Join(staging, journalFile))
	if err != nil {
		return nil, err
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(staging, journalFile), err)
	}
	return &j, nil
}

func (j *journal) tables() ([]schemas.Table, error) {
	var out []schemas.Table
	for _, name := range j.Tables {
		t, ok := schemas.ByName(name)
		if !ok {
			return nil, fmt.Errorf("publish journal of run %s names an unknown table %q", j.RunID, name)
		}
		out = append(out, t)
	}
	return out, nil
}

// outputs lists the journal's outputs with their control folders.
func (j *journal) outputs() []output {
	var out []output
	if j.DuckDB != nil {
		out = append(out, output{j.DuckDB.Path, j.DuckDB.Path + ".convsync"})
	}
	if j.Parquet != "" {
		out = append(out, output{j.Parquet, j.ParquetControl})
	}
	return out
}

// parquet opens the journal's Parquet output (nil without one).
func (j *journal) parquet(o *Outputs) (parquetOutput, error) {
	if j.Parquet == "" {
		return nil, nil
	}
	if o.pq != nil && o.pq.Location() == j.Parquet {
		return o.pq, nil
	}
	root := filepath.Dir(j.ParquetControl)
	return openParquet(j.Parquet, root, o.log)
}

type pointer struct {
	Staging string `json:"staging"`
}

func pointerPath(control, runID string) string {
	return filepath.Join(control, pendingDir, runID+".json")
}

// writePointers records in every output's control folder where the
// run's staging is.
func writePointers(outs []output, j *journal) error {
	b, err := json.Marshal(pointer{Staging: j.Staging})
	if err != nil {
		return err
	}
	for _, out := range outs {
		if err := os.MkdirAll(filepath.Join(out.control, pendingDir), 0o755); err != nil {
			return err
		}
		if err := stage.ReplaceFileSynced(pointerPath(out.control, j.RunID), b); err != nil {
			return fmt.Errorf("record the publish of run %s at %s: %w", j.RunID, out.location, err)
		}
	}
	return nil
}

func removePointers(outs []output, runID string) {
	for _, out := range outs {
		_ = os.Remove(pointerPath(out.control, runID))
	}
}

// recover finishes every publish that a dead process decided on one of
// the run's outputs but did not carry out, and drops pointers of
// publishes that were never decided.
func (o *Outputs) recover(ctx context.Context) error {
	for _, out := range o.outputs() {
		entries, err := os.ReadDir(filepath.Join(out.control, pendingDir))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".json") {
				continue
			}
			path := filepath.Join(out.control, pendingDir, e.Name())
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			var p pointer
			if json.Unmarshal(b, &p) != nil || p.Staging == "" {
				_ = os.Remove(path)
				continue
			}
			j, err := readJournal(p.Staging)
			if errors.Is(err, os.ErrNotExist) {
				_ = os.Remove(path) // never decided: nothing was published
				continue
			}
			if err != nil {
				return err
			}
			if err := o.rollForward(ctx, j); err != nil {
				return err
			}
		}
	}
	return nil
}

// rollForward carries out a decided publish of another (dead) run,
// taking the locks of its outputs that this run does not hold.
func (o *Outputs) rollForward(ctx context.Context, j *journal) error {
	outs := j.outputs()
	held := map[string]bool{}
	for _, x := range o.outputs() {
		held[x.location] = true
	}
	for _, out := range outs {
		if held[out.location] {
			continue
		}
		l, err := acquire(out, holder{RunID: o.cfg.RunID, Command: o.cfg.Command, PID: os.Getpid(), Since: time.Now().UTC()})
		if err != nil {
			return fmt.Errorf("finish the publish of run %s: %w", j.RunID, err)
		}
		defer l.release()
	}
	o.log.Warn().Str("run_id", j.RunID).Msg("finishing the publish of an earlier run that was interrupted after its publish decision")
	pq, err := j.parquet(o)
	if err != nil {
		return err
	}
	if pq != nil && pq != o.pq {
		defer pq.Close()
		if l, ok := pq.(leaser); ok {
			if err := l.Lease(ctx, o.cfg.RunID); err != nil {
				return fmt.Errorf("finish the publish of run %s: output %s is busy: %w", j.RunID, pq.Location(), err)
			}
		}
	}
	if err := o.carryOut(ctx, j, pq, true); err != nil {
		return fmt.Errorf("finish the publish of run %s: %w", j.RunID, err)
	}
	return nil
}

// carryOut publishes a decided run into its outputs: DuckDB (when
// withDuckDB; Publish commits the prepared transaction itself), then the
// Parquet dataset and its run record; then it removes the staging and the
// pointers. Every step can be repeated.
func (o *Outputs) carryOut(ctx context.Context, j *journal, pq parquetOutput, withDuckDB bool) error {
	tables, err := j.tables()
	if err != nil {
		return err
	}
	if withDuckDB && j.DuckDB != nil {
		d, err := duckdb.New(j.DuckDB.Path, duckdb.Options{History: j.DuckDB.History, LockWait: o.cfg.LockWait, Logger: o.log})
		if err != nil {
			return err
		}
		if err := d.Publish(ctx, tables, j.Files, j.Run); err != nil {
			return fmt.Errorf("duckdb %s: %w", j.DuckDB.Path, err)
		}
	}
	if pq != nil {
		if err := pq.Publish(ctx, tables, j.Files, j.Run); err != nil {
			return fmt.Errorf("parquet %s: %w", j.Parquet, err)
		}
	}
	outs := j.outputs()
	if err := faultpoint.Hit("cleanup"); err != nil {
		return err
	}
	if err := removeStaging(j.Staging); err != nil {
		o.log.Warn().Err(err).Str("staging", j.Staging).Msg("remove the staging of a published run")
	}
	removePointers(outs, j.RunID)
	return nil
}
