package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/version"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
)

// exitBusy is the exit status of a run refused because its outputs are
// busy (EX_TEMPFAIL): another run holds them, or a DuckDB reader kept the
// file locked past --lock-wait.
const exitBusy = 75

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
func (c *common) start(stderr io.Writer) (*progress, zerolog.Logger, *env, error) {
	prog := newProgress(stderr, c.Progress)
	log := newLogger(prog, stderrIsTerminal(stderr), c.level)
	prog.setLogger(&log)
	e, err := c.connect(&log)
	return prog, log, e, err
}

// connect builds the API client: against Twilio (or --base-url) with the
// environment's credentials, or against an in-process simulated API.
func (c *common) connect(log *zerolog.Logger) (*env, error) {
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
		if creds, err = credentials(os.Getenv); err != nil {
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
	e.baseURL = cl.BaseURL()
	return e, nil
}

// openOutputs opens the run's outputs as one transaction (see package
// sink): locked, checked, recovered, staged. Its errors carry the exit
// status: 2 for an output that cannot be written, 75 for busy outputs.
func (c *common) openOutputs(ctx context.Context, cfg sink.Config) (*sink.Outputs, error) {
	cfg.DuckDB, cfg.Parquet, cfg.Staging, cfg.LockWait = c.DuckDB, c.Parquet, c.Staging, c.LockWait
	cfg.SnapshotDate = c.snapshot
	outs, err := sink.Open(ctx, cfg)
	if err != nil {
		return nil, outputError(err)
	}
	return outs, nil
}

// jobsConfig is what a job of these flags runs with, into outs.
func (c *common) jobsConfig(outs *sink.Outputs, log zerolog.Logger, prog *progress) jobs.Config {
	return jobs.Config{
		RunID:        outs.RunID(),
		SnapshotDate: c.snapshot,
		Version:      version.Version(),
		Workers:      c.Concurrency,
		Services:     c.services,
		Policy:       c.policy,
		Logger:       log,
		Progress:     prog.update,
	}
}

// outputError gives an error of the outputs its exit status.
func outputError(err error) error {
	switch {
	case errors.Is(err, sink.ErrBadOutput):
		return &exitError{code: 2, err: err}
	case errors.Is(err, sink.ErrBusy):
		return &exitError{code: exitBusy, err: err}
	}
	return err
}

// orderedTables lists the tables of counts in schema order.
func orderedTables(counts map[string]int64) []string {
	var out []string
	for _, t := range schemas.All {
		if _, ok := counts[t.Name]; ok {
			out = append(out, t.Name)
		}
	}
	return out
}

var _ jobs.Sink = (*sink.Outputs)(nil)
