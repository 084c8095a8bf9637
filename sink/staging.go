package sink

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/convsync/convsync/sink/stage"
)

// Names of a run's staging folder and of one being removed.
const (
	stagingPrefix = "staging-"
	trashPrefix   = "trash-"
)

// stagingBase is the folder holding the run's staging: --staging, or
// else the Parquet root's control folder (so that publishing a partition
// is a rename on one file system), or else the DuckDB file's.
func (o *Outputs) stagingBase() string {
	if o.cfg.Staging != "" {
		abs, err := filepath.Abs(o.cfg.Staging)
		if err == nil {
			return abs
		}
		return o.cfg.Staging
	}
	outs := o.outputs()
	return outs[len(outs)-1].control
}

// prepareStaging removes the staging that dead runs left on these
// outputs (any run that held one of them is dead, since this run holds
// their locks), except the one this run resumes, finishes the publish of
// any of them that was decided, and then resumes or creates the run's
// staging.
func (o *Outputs) prepareStaging(ctx context.Context) error {
	base := o.stagingBase()
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	candidates, err := o.deadStaging(base)
	if err != nil {
		return err
	}
	resume := ""
	if o.cfg.Resume {
		resume = o.findResumable(candidates)
	}
	for _, c := range candidates {
		if c == resume {
			continue
		}
		if j, err := readJournal(c); err == nil {
			// Decided, but its pointers were removed first: carry it out.
			if err := o.rollForward(ctx, j); err != nil {
				return err
			}
			continue
		}
		if err := removeStaging(c); err != nil {
			return err
		}
	}
	return o.openStage(base, resume)
}

// deadStaging lists, newest run first, the staging folders of runs that
// wrote one of these outputs, in the staging base and in the outputs'
// control folders; on the way it removes trash and staging that never got
// a manifest in an output's own control folder.
func (o *Outputs) deadStaging(base string) ([]string, error) {
	owned := map[string]bool{} // control folders of these outputs
	for _, out := range o.outputs() {
		owned[out.control] = true
	}
	dirs := map[string]bool{base: true}
	for d := range owned {
		dirs[d] = true
	}
	ours := o.locations()
	var candidates []string
	for dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			switch {
			case strings.HasPrefix(e.Name(), trashPrefix):
				_ = os.RemoveAll(path)
			case strings.HasPrefix(e.Name(), stagingPrefix) && e.IsDir():
				m, err := stage.ReadManifest(path)
				switch {
				case err != nil && owned[dir]:
					// A staging whose manifest never got written belongs to
					// the output whose control folder holds it.
					_ = removeStaging(path)
				case err == nil && intersects(m.Outputs, ours):
					candidates = append(candidates, path)
				}
			}
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(candidates)))
	return candidates, nil
}

// openStage resumes the staging folder resume, or, when there is none or
// it cannot be resumed, creates the run's staging in base.
func (o *Outputs) openStage(base, resume string) error {
	opts := stage.Options{
		RowGroupRows: o.cfg.RowGroupRows, RowGroupBytes: o.cfg.RowGroupBytes, Allocator: o.cfg.Allocator,
		Spool: o.cfg.Checkpoints,
	}
	if resume != "" {
		m, _ := stage.ReadManifest(resume)
		opts.KV = map[string]string{stage.KVRunID: m.RunID, stage.KVSnapshotDate: o.date()}
		st, cp, err := stage.Resume(resume, o.cfg.Tables, o.cfg.Keep, opts)
		if err == nil {
			o.st, o.resumed = st, cp
			o.log.Info().Str("run_id", cp.RunID).Bool("crawl_finished", cp.Finished).Msg("resuming the interrupted run")
			return nil
		}
		o.log.Warn().Err(err).Msg("the interrupted run's staging cannot be resumed; starting afresh")
		if err := removeStaging(resume); err != nil {
			return err
		}
	}
	opts.KV = map[string]string{stage.KVRunID: o.cfg.RunID, stage.KVSnapshotDate: o.date()}
	st, err := stage.Create(filepath.Join(base, stagingPrefix+o.cfg.RunID), o.cfg.Tables, stage.Manifest{
		RunID: o.cfg.RunID, Command: o.cfg.Command, Outputs: o.locations(), Fingerprint: o.cfg.Fingerprint,
	}, opts)
	if err != nil {
		return err
	}
	o.st = st
	return nil
}

// findResumable returns the newest candidate this run may resume: same
// outputs, same fingerprint, a checkpoint, no publish decision.
func (o *Outputs) findResumable(candidates []string) string {
	for _, c := range candidates {
		m, err := stage.ReadManifest(c)
		if err != nil || m.Fingerprint != o.cfg.Fingerprint || !sameSet(m.Outputs, o.locations()) {
			continue
		}
		if _, err := readJournal(c); err == nil {
			continue
		}
		if stage.HasCheckpoint(c) {
			return c
		}
	}
	if len(candidates) > 0 {
		o.log.Info().Msg("no interrupted run of these inputs and outputs to resume; starting a full run")
	}
	return ""
}

func (o *Outputs) date() string { return o.cfg.SnapshotDate.UTC().Format("2006-01-02") }

// removeStaging removes a staging folder: renamed first, so that a crash
// halfway through leaves a trash folder, never a staging that looks whole.
func removeStaging(dir string) error {
	trash := filepath.Join(filepath.Dir(dir), trashPrefix+strings.TrimPrefix(filepath.Base(dir), stagingPrefix))
	if err := os.Rename(dir, trash); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return os.RemoveAll(dir)
	}
	return os.RemoveAll(trash)
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
