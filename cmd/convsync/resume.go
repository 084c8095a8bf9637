package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/sink"
)

// output is one place a run writes: a DuckDB file or a Parquet directory.
type output struct {
	path   string
	duckdb bool
}

func (c *common) outputs() []output {
	var out []output
	if c.DuckDB != "" {
		out = append(out, output{c.DuckDB, true})
	}
	if c.Parquet != "" {
		out = append(out, output{c.Parquet, false})
	}
	return out
}

// fingerprint identifies what an export reads and writes, so that --resume
// continues only a run of the same inputs into the same outputs. The PII
// key enters as an HMAC, never as itself.
func (f *exportFlags) fingerprint() string {
	var b strings.Builder
	api := f.BaseURL
	if f.Demo {
		api = "demo" // the in-process API listens on a new port each time
	}
	services := slices.Clone(f.services)
	slices.Sort(services)
	fmt.Fprintf(&b, "api=%s\nservices=%s\npii=%s\ndate=%s\nhistory=%t\n", api, strings.Join(services, ","), f.PII,
		f.snapshot.Format(time.DateOnly), f.History)
	if f.PII == "hash" {
		m := hmac.New(sha256.New, f.policy.Key)
		m.Write([]byte("convsync resume fingerprint"))
		fmt.Fprintf(&b, "key=%x\n", m.Sum(nil))
	}
	for _, o := range f.outputs() {
		abs, _ := filepath.Abs(o.path)
		fmt.Fprintf(&b, "output=%t:%s\n", o.duckdb, abs)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

// plan decides what this export continues. With --resume and a checkpoint
// of the same inputs in every output, it returns that run's ID, its
// checkpoint per output and the job's resume state; otherwise a new run.
// Staging left by other runs into these outputs is removed either way.
func (f *exportFlags) plan(fp string, log *zerolog.Logger) (runID string, cps map[output]*sink.Checkpoint, res *jobs.Resume, err error) {
	runID = newRunID(time.Now())
	if f.Resume {
		cps, res = f.findResumable(fp, log)
		if res != nil {
			for _, cp := range cps {
				runID = cp.RunID
			}
			log.Info().Str("run_id", runID).Int("parents_finished", res.Finished()).Msg("--resume: continuing the interrupted run")
		} else {
			cps = nil
			log.Info().Msg("--resume: no interrupted run of these inputs to continue; starting a full run")
		}
	}
	keep := ""
	if res != nil {
		keep = runID
	}
	for _, o := range f.outputs() {
		if err := sink.RemoveStaging(o.path, o.duckdb, keep); err != nil {
			return "", nil, nil, fmt.Errorf("remove staging of an earlier run at %s: %w", o.path, err)
		}
	}
	return runID, cps, res, nil
}

// findResumable returns the checkpoints of an interrupted run of the same
// fingerprint found in every output, agreeing with each other, or nil.
func (f *exportFlags) findResumable(fp string, log *zerolog.Logger) (map[output]*sink.Checkpoint, *jobs.Resume) {
	cps := map[output]*sink.Checkpoint{}
	var first *sink.Checkpoint
	for _, o := range f.outputs() {
		cp, err := sink.FindCheckpoint(o.path, o.duckdb)
		if err != nil {
			log.Warn().Err(err).Str("output", o.path).Msg("--resume: unreadable checkpoint ignored")
			return nil, nil
		}
		if cp == nil {
			return nil, nil
		}
		if first != nil && (cp.RunID != first.RunID || !bytes.Equal(cp.State, first.State) || len(cp.Done) != len(first.Done)) {
			log.Warn().Msg("--resume: the outputs hold checkpoints of different runs or moments; starting afresh")
			return nil, nil
		}
		first = cp
		cps[o] = cp
	}
	if first == nil {
		return nil, nil
	}
	res, err := jobs.LoadResume(first)
	if err != nil {
		log.Warn().Err(err).Msg("--resume: checkpoint ignored")
		return nil, nil
	}
	if res.State.Fingerprint != fp {
		log.Info().Str("run_id", first.RunID).Msg("--resume: the interrupted run had other inputs or outputs; starting afresh")
		return nil, nil
	}
	return cps, res
}
