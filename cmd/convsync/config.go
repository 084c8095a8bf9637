package main

import (
	"crypto/rand"
	"encoding/hex"
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
	"github.com/convsync/convsync/sink/dataset"
	"github.com/convsync/convsync/transform"
)

// errHelp is returned after -h printed the flags.
var errHelp = errors.New("help shown")

// Defaults of the flags that have no home in a library package.
const (
	defaultDuckDB   = "convsync.duckdb"
	defaultLockWait = 5 * time.Minute
)

// common holds the flags export and lookup share.
type common struct {
	BaseURL        string
	DuckDB         string
	Parquet        string
	Staging        string
	Demo           bool
	PII            string
	SnapshotDate   string
	Concurrency    int
	Services       string
	LogLevel       string
	Progress       string
	RequestTimeout time.Duration
	MaxRetries     int
	LockWait       time.Duration
	Summary        string
	MetricsFile    string

	// Filled by Validate.
	snapshot time.Time
	services []string
	policy   transform.Policy
	level    zerolog.Level
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.BaseURL, "base-url", extract.DefaultBaseURL, "API root")
	fs.StringVar(&c.DuckDB, "duckdb", "", "write the tables into this DuckDB database `file` (default "+defaultDuckDB+" when no output is given)")
	fs.StringVar(&c.Parquet, "parquet", "", "write one Parquet dataset per table under `dir`/<table>/")
	fs.StringVar(&c.Staging, "staging", "", "stage the run's files under `dir` (default: in the Parquet root's .convsync folder, or beside the DuckDB file)")
	fs.BoolVar(&c.Demo, "demo", false, "start the built-in simulated API in-process and read from it (no credentials needed)")
	fs.StringVar(&c.PII, "pii", transform.PIIKeep, "PII `mode`: keep, hash (HMAC-SHA256 keyed with $"+transform.PIIKeyEnv+") or redact")
	fs.StringVar(&c.SnapshotDate, "snapshot-date", "", "the `YYYY-MM-DD` this run's snapshot is filed under (default today, UTC)")
	fs.IntVar(&c.Concurrency, "concurrency", extract.DefaultConcurrency, "most API requests in flight; below it convsync finds the account's limit by itself")
	fs.StringVar(&c.Services, "services", "", "comma-separated service `SIDs` to walk (default: all)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&c.Progress, "progress", "auto", "progress display: auto (on a terminal), on, off")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", extract.DefaultRequestTimeout, "timeout of one API request")
	fs.IntVar(&c.MaxRetries, "max-retries", extract.DefaultMaxRetries, "retries of one request on 5xx, network errors and untrustworthy answers")
	fs.DurationVar(&c.LockWait, "lock-wait", defaultLockWait, "how long to wait at publish time for a DuckDB file another process holds open")
	fs.StringVar(&c.Summary, "summary", "", "the end-of-run summary on stdout: json (one line) or text (default: text on a terminal, json otherwise)")
	fs.StringVar(&c.MetricsFile, "metrics-file", "", "write the run's figures to `path` in Prometheus text format (node_exporter's textfile collector)")
}

// defaults fills in what the flags leave to convsync: the DuckDB file
// when no output is given, today's date.
func (c *common) defaults() {
	if c.DuckDB == "" && c.Parquet == "" {
		c.DuckDB = defaultDuckDB
	}
	if c.SnapshotDate == "" {
		c.SnapshotDate = time.Now().UTC().Format(time.DateOnly)
	}
}

// Validate fills in the defaults, then checks the flags and the
// environment they depend on, before anything is fetched or written, and
// keeps what it parsed (the date, the services, the PII policy, the log
// level).
func (c *common) Validate(getenv func(string) string) error {
	c.defaults()
	if c.Demo && c.BaseURL != extract.DefaultBaseURL {
		return usageError("--demo serves its own simulated API: it cannot be combined with --base-url %s", c.BaseURL)
	}
	if !c.Demo {
		if _, err := extract.ParseBaseURL(c.BaseURL); err != nil {
			return usageError("--base-url %q: %v", c.BaseURL, err)
		}
	}
	snapshot, err := time.Parse(time.DateOnly, c.SnapshotDate)
	if err != nil {
		return usageError("--snapshot-date %q is not a date like 2026-01-31", c.SnapshotDate)
	}
	if c.Concurrency < 1 || c.Concurrency > extract.MaxConcurrency {
		return usageError("--concurrency %d is out of range 1..%d", c.Concurrency, extract.MaxConcurrency)
	}
	if c.MaxRetries < 0 {
		return usageError("--max-retries must not be negative")
	}
	if c.RequestTimeout <= 0 {
		return usageError("--request-timeout must be positive")
	}
	if c.LockWait < 0 {
		return usageError("--lock-wait must not be negative")
	}
	var services []string
	for _, s := range strings.Split(c.Services, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !isSID(s, "IS") {
			return usageError("--services: %q is not a service SID (IS followed by 32 hex digits)", s)
		}
		services = append(services, s)
	}
	policy := transform.Policy{Mode: c.PII}
	if c.PII == transform.PIIHash {
		policy.Key = []byte(getenv(transform.PIIKeyEnv))
	}
	if err := policy.Validate(); err != nil {
		if errors.Is(err, transform.ErrNoPIIKey) {
			return usageError("--pii hash needs a key in %s", transform.PIIKeyEnv)
		}
		return usageError("--pii: %v", err)
	}
	level, err := zerolog.ParseLevel(c.LogLevel)
	if err != nil || c.LogLevel == "" {
		return usageError("--log-level %q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.Progress {
	case "auto", "on", "off":
	default:
		return usageError("--progress %q is not one of auto, on, off", c.Progress)
	}
	switch c.Summary {
	case "", summaryJSON, summaryText:
	default:
		return usageError("--summary %q is not json or text", c.Summary)
	}
	c.snapshot, c.services, c.policy, c.level = snapshot, services, policy, level
	return nil
}

// credentials reads the Twilio credentials from the environment.
func credentials(getenv func(string) string) (extract.Credentials, error) {
	cr, err := extract.CredentialsFromEnv(getenv)
	if err != nil {
		return cr, usageError("%v (set TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN, or with TWILIO_API_KEY and TWILIO_API_SECRET)", err)
	}
	return cr, nil
}

// outputLocations are the outputs' locations as the sink names them.
func (c *common) outputLocations() []string {
	var out []string
	for _, p := range []string{c.DuckDB, c.Parquet} {
		if p == "" {
			continue
		}
		if abs, err := filepath.Abs(p); err == nil && !dataset.IsBucketURL(p) {
			p = abs
		}
		out = append(out, p)
	}
	return out
}

func isSID(s, prefix string) bool {
	if len(s) != 34 || !strings.HasPrefix(s, prefix) {
		return false
	}
	_, err := hex.DecodeString(s[2:])
	return err == nil
}

// newRunID returns a sortable, unique run ID such as 20261122T041500Z-3f9a1c.
func newRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// parseFlags parses args into fs, turning -h into errHelp and flag errors
// into usage errors, then gives the flags the command line left unset
// their values from the environment (CONVSYNC_<FLAG>) or the config file
// (--config FILE, added to fs): see settings.go.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	registerConfigFlag(fs)
	if err := parseArgs(fs, args, stderr); err != nil {
		return err
	}
	return applySettings(fs, stderr)
}

// parseArgs parses the command line alone into fs, as parseFlags does;
// for fakeapi, whose flags have no settings.
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	// The flag package's own messages are silenced: a bad flag gets one
	// line (from run), -h the list of flags.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintf(stderr, "usage: %s [flags]\n", fs.Name())
			fs.PrintDefaults()
			return errHelp
		}
		return usageError("%v (see '%s -h')", err, fs.Name())
	}
	return nil
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// newLogger logs to w: readable lines when terminal, JSON otherwise.
func newLogger(w io.Writer, terminal bool, level zerolog.Level) zerolog.Logger {
	if terminal {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// stderrIsTerminal reports whether w is a terminal.
func stderrIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

func fmtCount(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
