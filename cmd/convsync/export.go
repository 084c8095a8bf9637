package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
)

// exportFlags are export's flags beyond the common ones.
type exportFlags struct {
	common
	History    bool
	Resume     bool
	Checkpoint time.Duration
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f exportFlags
	fs := flag.NewFlagSet("convsync export", flag.ContinueOnError)
	f.register(fs)
	fs.BoolVar(&f.History, "history", false, "DuckDB: keep every snapshot and maintain participants_history; an earlier date than the last is refused")
	fs.BoolVar(&f.Resume, "resume", false, "continue the last interrupted run; with nothing to resume, an ordinary run")
	fs.DurationVar(&f.Checkpoint, "checkpoint", jobs.DefaultCheckpointFirst, "first checkpoint after `D`, then at doubling intervals up to "+jobs.DefaultCheckpointMax.String()+" (0: none)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("export takes no arguments, got %q", fs.Arg(0))
	}
	if err := f.Validate(os.Getenv); err != nil {
		return err
	}
	if f.Checkpoint < 0 {
		return usageError("--checkpoint must not be negative")
	}
	if f.History {
		if f.DuckDB == "" {
			return usageError("--history keeps snapshots in DuckDB: give --duckdb FILE")
		}
		if err := sink.CheckHistoryDate(ctx, f.DuckDB, f.snapshot.Format(time.DateOnly)); err != nil {
			if errors.Is(err, sink.ErrHistoryDate) {
				return usageError("%v", err)
			}
			return fmt.Errorf("--history: %w", err)
		}
	}
	prog, log, env, err := f.start(ctx, stderr)
	if err != nil {
		return err
	}
	defer env.close()

	fp := f.fingerprint()
	runID, cps, resume, err := f.plan(fp, &log)
	if err != nil {
		return err
	}
	snk, err := f.openSinks(schemas.Export, runID, &log, func(o output) []sink.Option {
		var opts []sink.Option
		if o.duckdb && f.History {
			opts = append(opts, sink.WithHistory())
		}
		if cp := cps[o]; cp != nil {
			opts = append(opts, sink.WithResume(cp, jobs.ResumableTables))
		}
		return opts
	})
	if err != nil {
		return err
	}
	defer snk.Close()

	checkpointFirst := f.Checkpoint
	if checkpointFirst == 0 {
		checkpointFirst = -1 // off
	}
	log.Info().Str("run_id", runID).Str("base_url", env.baseURL).Str("snapshot_date", f.snapshot.Format(time.DateOnly)).
		Str("pii", f.PII).Msg("export started")
	sum, err := jobs.Export(ctx, env.client, snk, jobs.Config{
		RunID:           runID,
		SnapshotDate:    f.snapshot,
		Concurrency:     f.Concurrency,
		Services:        f.services,
		Policy:          f.policy,
		Logger:          &log,
		Progress:        prog.update,
		Fingerprint:     fp,
		Resume:          resume,
		CheckpointFirst: checkpointFirst,
	})
	prog.finish()
	if err != nil {
		if serr := snk.Suspend(); serr != nil {
			log.Warn().Err(serr).Msg("clean up staging")
		}
		err = fmt.Errorf("export failed after %d requests: %w", sum.Run.Requests, err)
		if cp, _ := findAny(f.outputs()); cp != nil {
			err = fmt.Errorf("%w; %w", err, errResumable)
		}
		return err
	}
	if err := snk.Close(); err != nil {
		return fmt.Errorf("close outputs: %w", err)
	}
	f.printSummary(stdout, sum.Run, sum.Skipped, &log)
	if f.DuckDB != "" {
		fmt.Fprintf(stdout, "First query to try (any DuckDB client; README.md has more):\n  duckdb %s \"%s\"\n", f.DuckDB, firstQuery)
	}
	return nil
}

// errResumable marks a failure that left a checkpoint to resume from.
var errResumable = errors.New("run again with --resume to continue where it stopped")

// firstQuery is the query the summary suggests.
const firstQuery = "SELECT chat_service_sid, coalesce(messaging_binding_type, 'chat') AS binding, count(*) AS participants FROM participants GROUP BY ALL ORDER BY ALL"

// env is what a run reads from: the API client, and the simulated API when
// --demo started one.
type env struct {
	client  *extract.Client
	baseURL string
	fake    *fakeapi.Server
}

func (e *env) close() {
	if e.fake != nil {
		e.fake.Close()
	}
}

// start sets up what a run needs before it opens its outputs: progress,
// the logger (whose lines clear the live progress line), and the API client.
func (c *common) start(ctx context.Context, stderr io.Writer) (*progress, zerolog.Logger, *env, error) {
	prog := newProgress(stderr, c.Progress)
	log := newLogger(prog, stderrIsTerminal(stderr), c.level)
	prog.setLogger(&log)
	e, err := c.connect(ctx, &log)
	return prog, log, e, err
}

// connect builds the API client: against Twilio (or --base-url) with the
// environment's credentials, or against an in-process simulated API.
func (c *common) connect(ctx context.Context, log *zerolog.Logger) (*env, error) {
	e := &env{baseURL: c.BaseURL}
	var creds extract.Credentials
	if c.Demo {
		srv, err := fakeapi.Start("127.0.0.1:0", fakeapi.Options{Dataset: fakeapi.NewDataset(fakeapi.DemoConfig())})
		if err != nil {
			return nil, fmt.Errorf("start the simulated API: %w", err)
		}
		e.fake, e.baseURL = srv, srv.URL()
		sc := srv.Credentials()
		creds = extract.Credentials{AccountSID: sc.AccountSID, AuthToken: sc.AuthToken}
		log.Info().Str("base_url", e.baseURL).Msg("demo: serving the simulated Conversations API in-process")
	} else {
		var err error
		if creds, err = c.credentials(os.Getenv); err != nil {
			return nil, err
		}
	}
	cl, err := extract.New(extract.Config{
		BaseURL:        e.baseURL,
		Credentials:    creds,
		Concurrency:    c.Concurrency,
		RequestTimeout: c.RequestTimeout,
		MaxRetries:     c.MaxRetries,
		Logger:         *log,
	})
	if err != nil {
		e.close()
		return nil, usageError("%v", err)
	}
	e.client = cl
	return e, nil
}

// openSinks opens the outputs the flags ask for. Nothing is visible in
// them until Commit.
func (c *common) openSinks(tables []schemas.Table, runID string, log *zerolog.Logger, optsFor func(output) []sink.Option) (jobs.Sink, error) {
	var sinks []sink.Sink
	closeAll := func() {
		for _, s := range sinks {
			s.Close()
		}
	}
	if c.DuckDB != "" {
		if dir := filepath.Dir(c.DuckDB); dir != "" {
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return nil, usageError("--duckdb %s: folder %s does not exist", c.DuckDB, dir)
			}
		}
		d, err := sink.NewDuckDB(c.DuckDB, tables, runID, c.snapshot, append(optsFor(output{c.DuckDB, true}), sink.WithLogger(*log))...)
		if err != nil {
			return nil, fmt.Errorf("--duckdb %s: %w", c.DuckDB, err)
		}
		sinks = append(sinks, d)
	}
	if c.Parquet != "" {
		p, err := sink.NewParquet(c.Parquet, tables, runID, c.snapshot, append(optsFor(output{c.Parquet, false}), sink.WithLogger(*log))...)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("--parquet %s: %w", c.Parquet, err)
		}
		sinks = append(sinks, p)
	}
	if len(sinks) == 1 {
		return sinks[0], nil
	}
	return sink.Multi(sinks...), nil
}

// printSummary writes the end-of-run summary to w and logs it.
func (c *common) printSummary(w io.Writer, run sink.Run, skipped []string, log *zerolog.Logger) {
	took := run.Ended.Sub(run.Started).Round(time.Millisecond)
	ev := log.Info().Str("run_id", run.ID).Dur("elapsed", took).Int64("requests", run.Requests).
		Int64("retries", run.Retries).Int64("parents_skipped", run.ParentsSkipped)
	for t, n := range run.Rows {
		ev = ev.Int64("rows_"+t, n)
	}
	ev.Msg(run.Command + " finished")

	fmt.Fprintf(w, "convsync %s %s: done in %s\n", run.Command, run.ID, took)
	for _, t := range append(append([]schemas.Table{}, schemas.Export...), schemas.Lookup...) {
		if n, ok := run.Rows[t.Name]; ok {
			fmt.Fprintf(w, "  %-26s %12s rows\n", t.Name, fmtCount(n))
		}
	}
	fmt.Fprintf(w, "  requests %s, retries %s, deleted during the run (kept without children) %d\n",
		fmtCount(run.Requests), fmtCount(run.Retries), run.ParentsSkipped)
	if len(skipped) > 0 && len(skipped) <= 10 {
		fmt.Fprintf(w, "  deleted during the run: %s\n", strings.Join(skipped, ", "))
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

// findAny returns a checkpoint kept in any of the outputs.
func findAny(outs []output) (*sink.Checkpoint, error) {
	for _, o := range outs {
		if cp, err := sink.FindCheckpoint(o.path, o.duckdb); cp != nil || err != nil {
			return cp, err
		}
	}
	return nil, nil
}
