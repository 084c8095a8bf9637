package main

import (
	"bufio"
	"encoding/json"
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

	"github.com/convsync/convsync/internal/version"
	"github.com/convsync/convsync/sink/runs"
	"github.com/convsync/convsync/sink/stage"
)

// Summary modes (--summary).
const (
	summaryJSON = "json"
	summaryText = "text"
)

// report is what an export or a lookup tells at its end, successful or
// not: the summary on stdout (--summary json or text), the metrics file
// (--metrics-file), and, when logs are JSON, the failure as a JSON record.
type report struct {
	command string
	started time.Time
	stdout  io.Writer
	stderr  io.Writer

	// Set by the command as it learns them.
	summary   string // --summary; "" until the flags are read
	metrics   string // --metrics-file
	log       *zerolog.Logger
	run       *runs.Record
	outputs   []string
	resumable bool
	// text prints the summary for people of a successful run.
	text func(io.Writer)
}

// jsonSummary is the one line --summary json prints.
type jsonSummary struct {
	RunID            string                      `json:"run_id"`
	Command          string                      `json:"command"`
	Status           string                      `json:"status"`
	ExitCode         int                         `json:"exit_code"`
	SnapshotDate     string                      `json:"snapshot_date,omitempty"`
	StartedAt        time.Time                   `json:"started_at"`
	EndedAt          time.Time                   `json:"ended_at"`
	DurationSeconds  float64                     `json:"duration_seconds"`
	Rows             map[string]int64            `json:"rows"`
	Requests         int64                       `json:"requests"`
	Retries          int64                       `json:"retries"`
	Throttled        int64                       `json:"throttled"`
	Duplicates       int64                       `json:"duplicates"`
	ParentsSkipped   int64                       `json:"parents_skipped"`
	ConcurrencyLimit int                         `json:"concurrency_limit"`
	UnknownFields    map[string]map[string]int64 `json:"unknown_fields"`
	Outputs          []string                    `json:"outputs"`
	Version          string                      `json:"version"`
	Resumable        bool                        `json:"resumable"`
	Error            string                      `json:"error,omitempty"`
}

// finish tells the run's end: err is nil for a successful run, reason the
// one-line reason of a failed one (printed after this by the caller).
func (r *report) finish(code int, reason string) {
	rec := runs.Record{Command: r.command, StartedAt: r.started, EndedAt: time.Now().UTC(), Version: version.Version()}
	if r.run != nil {
		rec = *r.run
	}
	rec = rec.Normalized()
	if rec.EndedAt.IsZero() {
		rec.EndedAt = time.Now().UTC()
	}
	status := runs.Succeeded
	if code != 0 {
		status = runs.Failed
	}
	s := jsonSummary{
		RunID: rec.RunID, Command: r.command, Status: status, ExitCode: code, SnapshotDate: rec.SnapshotDate,
		StartedAt: rec.StartedAt, EndedAt: rec.EndedAt, DurationSeconds: rec.EndedAt.Sub(rec.StartedAt).Seconds(),
		Rows: rec.Rows, Requests: rec.Requests, Retries: rec.Retries, Throttled: rec.Throttled, Duplicates: rec.Duplicates,
		ParentsSkipped: rec.ParentsSkipped, ConcurrencyLimit: rec.ConcurrencyLimit, UnknownFields: rec.UnknownFields,
		Outputs: r.outputs, Version: version.Version(), Resumable: r.resumable, Error: reason,
	}
	if s.Outputs == nil {
		s.Outputs = []string{}
	}
	mode := r.summary
	if mode == "" {
		mode = summaryText
		if !isTerminalWriter(r.stdout) {
			mode = summaryJSON
		}
	}
	switch {
	case mode == summaryJSON:
		b, _ := json.Marshal(s)
		fmt.Fprintf(r.stdout, "%s\n", b)
	case code == 0 && r.text != nil:
		r.text(r.stdout)
	case code != 0 && r.run != nil:
		fmt.Fprintf(r.stdout, "convsync %s %s: failed after %s (exit %d); requests %s, retries %s\n", r.command, rec.RunID,
			s.EndedAt.Sub(s.StartedAt).Round(time.Millisecond), code, fmtCount(rec.Requests), fmtCount(rec.Retries))
	}
	if r.metrics != "" {
		if err := writeMetrics(r.metrics, s); err != nil {
			fmt.Fprintf(r.stderr, "convsync: warning: write the metrics file: %v\n", err)
		}
	}
	if code != 0 && (r.log == nil || !isTerminalWriter(r.stderr)) {
		// JSON logs get the failure as a record too; the last line on stderr
		// stays the plain reason.
		l := zerolog.New(r.stderr).With().Timestamp().Logger()
		if r.log != nil {
			l = *r.log
		}
		l.Error().Str("run_id", rec.RunID).Int("exit_code", code).Str("reason", reason).Msg(r.command + " failed")
	}
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

// metricsPrefix starts every metric convsync writes.
const metricsPrefix = "convsync_"

// writeMetrics writes the run's figures in Prometheus' text format to
// path, atomically (a reader such as node_exporter's textfile collector
// sees the old file or the new one), keeping the time of the last success
// from the previous file when this run failed.
func writeMetrics(path string, s jsonSummary) error {
	lastSuccess := 0.0
	if s.Status == runs.Succeeded {
		lastSuccess = float64(s.EndedAt.UnixMilli()) / 1000
	} else {
		lastSuccess = previousMetric(path, metricsPrefix+"last_success_timestamp_seconds", s.Command)
	}
	cmd := fmt.Sprintf("command=%q", s.Command)
	var b strings.Builder
	metric := func(name, help, labels string, v float64) {
		fmt.Fprintf(&b, "# HELP %s%s %s\n# TYPE %s%s gauge\n", metricsPrefix, name, help, metricsPrefix, name)
		fmt.Fprintf(&b, "%s%s{%s} %s\n", metricsPrefix, name, labels, strconv.FormatFloat(v, 'f', -1, 64))
	}
	success := 0.0
	if s.Status == runs.Succeeded {
		success = 1
	}
	metric("last_run_success", "Whether the last run succeeded (1) or failed (0).", cmd, success)
	metric("last_run_exit_code", "The exit status of the last run.", cmd, float64(s.ExitCode))
	metric("last_run_timestamp_seconds", "When the last run ended, in seconds since the epoch.", cmd, float64(s.EndedAt.UnixMilli())/1000)
	metric("last_success_timestamp_seconds", "When the last successful run ended, in seconds since the epoch (0: never here).", cmd, lastSuccess)
	metric("last_run_duration_seconds", "How long the last run took.", cmd, s.DurationSeconds)
	metric("last_run_requests", "API requests the last run sent.", cmd, float64(s.Requests))
	metric("last_run_retries", "Requests the last run repeated after a transient failure or a 429.", cmd, float64(s.Retries))
	metric("last_run_throttled", "429 answers the last run got.", cmd, float64(s.Throttled))
	metric("last_run_parents_skipped", "Parents the last run found deleted while it walked them.", cmd, float64(s.ParentsSkipped))
	metric("last_run_concurrency_limit", "The request limit the last run found for the account.", cmd, float64(s.ConcurrencyLimit))
	fmt.Fprintf(&b, "# HELP %slast_run_rows Rows the last run wrote, per table.\n# TYPE %slast_run_rows gauge\n", metricsPrefix, metricsPrefix)
	for _, t := range slices.Sorted(maps.Keys(s.Rows)) {
		fmt.Fprintf(&b, "%slast_run_rows{%s,table=%q} %d\n", metricsPrefix, cmd, t, s.Rows[t])
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return stage.ReplaceFileSynced(path, []byte(b.String()))
}

// previousMetric reads a metric of command from an earlier metrics file
// (0 when there is none).
func previousMetric(path, name, command string) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	want := fmt.Sprintf("%s{command=%q} ", name, command)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return n
		}
	}
	return 0
}
