package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/sink/duckdb"
	"github.com/convsync/convsync/sink/runs"
)

// exportFlags are export's flags beyond the common ones.
type exportFlags struct {
	common
	History    bool
	Resume     bool
	Checkpoint time.Duration
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer, rep *report) error {
	var f exportFlags
	fs := flag.NewFlagSet("convsync export", flag.ContinueOnError)
	f.register(fs)
	fs.BoolVar(&f.History, "history", false, "DuckDB: keep every snapshot and maintain participants_history; an earlier date than the last is refused")
	fs.BoolVar(&f.Resume, "resume", false, "continue the last interrupted run; with nothing to resume, an ordinary run")
	fs.DurationVar(&f.Checkpoint, "checkpoint", jobs.DefaultSchedule.Min, "shortest time `D` between checkpoints (they come at least every "+
		jobs.DefaultSchedule.Max.String()+"); 0 turns checkpoints off")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("export takes no arguments, got %q", fs.Arg(0))
	}
	rep.summary, rep.metrics = f.Summary, f.MetricsFile
	if err := f.Validate(os.Getenv); err != nil {
		return err
	}
	rep.outputs = f.outputLocations()
	if f.Checkpoint < 0 {
		return usageError("--checkpoint must not be negative")
	}
	if f.History && f.DuckDB == "" {
		return usageError("--history keeps snapshots in DuckDB: give --duckdb FILE")
	}
	prog, log, env, err := f.start(stderr)
	if err != nil {
		return err
	}
	defer env.close()
	rep.log = &log

	api := env.baseURL
	if f.Demo {
		api = "demo" // the in-process API listens on a new port each time
	}
	fp := jobs.Fingerprint(jobs.Inputs{BaseURL: api, Services: f.services, PII: f.PII, PIIKey: f.policy.Key,
		Date: f.snapshot.Format(time.DateOnly), History: f.History, Outputs: f.outputLocations()})
	outs, err := f.openOutputs(ctx, sink.Config{
		History: f.History, Command: "export", RunID: newRunID(time.Now()), Tables: schemas.Export,
		Fingerprint: fp, Checkpoints: f.Checkpoint > 0, Resume: f.Resume, Keep: jobs.ResumedTables, Logger: log,
	})
	if err != nil {
		return annotateHistory(err)
	}
	defer outs.Close()
	watchPublish(outs.Decided)

	cfg := f.jobsConfig(outs, log, prog)
	cfg.Fingerprint = fp
	if f.Checkpoint > 0 {
		s := jobs.DefaultSchedule
		s.Min = f.Checkpoint
		cfg.Checkpoints = &s
	}
	if cp := outs.Resumed(); cp != nil {
		if cfg.Resume, err = jobs.LoadResume(cp); err != nil {
			return err
		}
	}
	log.Info().Str("run_id", cfg.RunID).Str("base_url", env.baseURL).Str("snapshot_date", f.snapshot.Format(time.DateOnly)).
		Str("pii", f.PII).Bool("resumed", cfg.Resume != nil).Msg("export started")
	sum, err := jobs.Export(ctx, env.client, outs, cfg)
	prog.finish()
	rep.run = &sum.Run
	if err != nil {
		closeErr := outs.Close()
		err = fmt.Errorf("export failed after %d requests: %w", sum.Run.Requests, outputError(err))
		if closeErr != nil {
			log.Warn().Err(closeErr).Msg("clean up staging")
		}
		if rep.resumable = outs.Resumable(); rep.resumable {
			err = fmt.Errorf("%w; %w", err, errResumable)
		}
		return err
	}
	logSummary(&log, sum.Run)
	rep.text = func(w io.Writer) {
		f.textSummary(w, sum.Run, sum.Skipped)
		if f.DuckDB != "" {
			fmt.Fprintf(w, "First query to try (README.md has more):\n  convsync sql --duckdb %s \"%s\"\n", f.DuckDB, firstQuery)
		}
	}
	return nil
}

// annotateHistory names the flag of a refused history date.
func annotateHistory(err error) error {
	if errors.Is(err, duckdb.ErrHistoryDate) {
		return &exitError{code: 2, err: fmt.Errorf("--history: %w", err)}
	}
	return err
}

// errResumable marks a failure that left a checkpoint to resume from.
var errResumable = fmt.Errorf("run again with --resume to continue where it stopped")

// firstQuery is the query the summary suggests.
const firstQuery = "SELECT chat_service_sid, coalesce(messaging_binding_type, 'chat') AS binding, count(*) AS participants FROM participants GROUP BY ALL ORDER BY ALL"

// logSummary logs the end of a successful run.
func logSummary(log *zerolog.Logger, run runs.Record) {
	took := run.EndedAt.Sub(run.StartedAt).Round(time.Millisecond)
	ev := log.Info().Str("run_id", run.RunID).Dur("elapsed", took).Int64("requests", run.Requests).
		Int64("retries", run.Retries).Int64("throttled", run.Throttled).Int64("parents_skipped", run.ParentsSkipped).
		Int("concurrency_limit", run.ConcurrencyLimit).Int("concurrency_peak", run.ConcurrencyPeak)
	for t, n := range run.Rows {
		ev = ev.Int64("rows_"+t, n)
	}
	ev.Msg(run.Command + " finished")
}

// textSummary writes the end-of-run summary for people to w.
func (c *common) textSummary(w io.Writer, run runs.Record, skipped []string) {
	took := run.EndedAt.Sub(run.StartedAt).Round(time.Millisecond)
	fmt.Fprintf(w, "convsync %s %s: done in %s\n", run.Command, run.RunID, took)
	for _, t := range orderedTables(run.Rows) {
		fmt.Fprintf(w, "  %-26s %12s rows\n", t, fmtCount(run.Rows[t]))
	}
	fmt.Fprintf(w, "  requests %s, retries %s, throttled (429) %s, deleted during the run (kept without children) %d\n",
		fmtCount(run.Requests), fmtCount(run.Retries), fmtCount(run.Throttled), run.ParentsSkipped)
	if run.Duplicates > 0 {
		fmt.Fprintf(w, "  rows the API repeated within a list, dropped: %s\n", fmtCount(run.Duplicates))
	}
	if run.ConcurrencyLimit > 0 {
		fmt.Fprintf(w, "  requests in flight: at most %d, limit found %d\n", run.ConcurrencyPeak, run.ConcurrencyLimit)
	}
	if len(skipped) > 0 && len(skipped) <= 10 {
		fmt.Fprintf(w, "  deleted during the run: %s\n", strings.Join(skipped, ", "))
	}
	for _, t := range orderedUnknown(run.UnknownFields) {
		fmt.Fprintf(w, "  fields the API sent that %s does not have (left out): %s\n", t, formatUnknown(run.UnknownFields[t]))
	}
	if c.DuckDB != "" {
		abs, _ := filepath.Abs(c.DuckDB)
		fmt.Fprintf(w, "DuckDB: %s\n", abs)
	}
	if c.Parquet != "" {
		abs, _ := filepath.Abs(c.Parquet)
		fmt.Fprintf(w, "Parquet: %s/<table>/snapshot_date=%s/\n", abs, c.snapshot.Format(time.DateOnly))
	}
}

// orderedUnknown lists the tables with unknown fields in schema order.
func orderedUnknown(m map[string]map[string]int64) []string {
	var out []string
	for _, t := range schemas.All {
		if len(m[t.Name]) > 0 {
			out = append(out, t.Name)
		}
	}
	return out
}

// formatUnknown renders field counts as "a (3), b (1)", by name.
func formatUnknown(m map[string]int64) string {
	names := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s (%s)", strconv.Quote(n), fmtCount(m[n]))
	}
	return strings.Join(parts, ", ")
}
