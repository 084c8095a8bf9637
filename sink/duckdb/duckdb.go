// Package duckdb is the DuckDB output of a run: each table of the run
// replaced, in one transaction, by the rows staged in its Parquet file,
// together with the run's row in the runs table.
//
// Publishing is split in two around the run's publish decision. Prepare
// opens the database (waiting up to the lock wait for a reader that holds
// it), begins the transaction and runs every statement; nothing is visible
// yet and Rollback leaves the file as it was. Commit, after the decision,
// commits. Publish does both for a publish that a dead process left
// unfinished, and does nothing when the run's row is there already, so it
// can be repeated safely.
package duckdb

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	goduckdb "github.com/marcboeker/go-duckdb/v2"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/lock"
	"github.com/convsync/convsync/sink/runs"
)

// RunsTable is the table holding one row per published run:
//
//	CREATE TABLE runs (
//	    run_id            VARCHAR PRIMARY KEY,
//	    command           VARCHAR,      -- export | lookup
//	    version           VARCHAR,      -- the convsync version that wrote it
//	    snapshot_date     DATE,
//	    started_at        TIMESTAMPTZ,
//	    ended_at          TIMESTAMPTZ,
//	    status            VARCHAR,      -- succeeded
//	    pii               VARCHAR,      -- keep | hash | redact
//	    requests          BIGINT,
//	    retries           BIGINT,
//	    throttled         BIGINT,       -- 429 answers
//	    duplicates        BIGINT,       -- rows dropped as repeats within a list
//	    parents_skipped   BIGINT,
//	    concurrency_limit INTEGER,      -- the request limit found for the account
//	    services          VARCHAR[],    -- service SIDs walked
//	    rows              MAP(VARCHAR, BIGINT), -- rows written per table
//	    unknown_fields    VARCHAR,      -- JSON: {table: {field: count}}
//	    rows_<table>      BIGINT, ...   -- the same as rows, one column per table ever written
//	)
//
// A rows_<table> column is added the first time a run writes that table
// and is NULL for runs that did not write it.
const RunsTable = "runs"

// ErrNotDuckDB is returned by Check for a path that cannot be a DuckDB
// database: a directory, or a file of another kind.
var ErrNotDuckDB = errors.New("not a DuckDB database")

// Target is a DuckDB database file a run publishes into.
type Target struct {
	path     string
	history  bool
	lockWait time.Duration
	log      zerolog.Logger
}

// Options configure a Target.
type Options struct {
	// History keeps every snapshot and the tables' histories (see
	// SnapshotDatesTable).
	History bool
	// LockWait is how long Prepare retries a database another process
	// holds open before it gives up with lock.ErrBusy.
	LockWait time.Duration
	Logger   zerolog.Logger
}

// New returns the target for the database file at path.
func New(path string, o Options) (*Target, error) {
	if path == "" {
		return nil, errors.New("empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return &Target{path: abs, history: o.History, lockWait: o.LockWait,
		log: o.Logger.With().Str("output", "duckdb").Str("path", abs).Logger()}, nil
}

// Path is the database file's absolute path.
func (t *Target) Path() string { return t.path }

// duckdbMagic is the magic of a DuckDB file's main header, after its
// 8-byte checksum.
var duckdbMagic = []byte("DUCK")

// Check refuses, before anything is fetched, a path that cannot be a
// DuckDB database: a directory, a file of another kind, a missing folder.
// A missing file is fine (the run creates it), and so is an empty one.
// With History it also refuses a snapshot date earlier than the last kept
// (when the file can be read now; the transaction checks again).
func (t *Target) Check(ctx context.Context, date string) error {
	dir := filepath.Dir(t.path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: folder %s does not exist", ErrNotDuckDB, dir)
	}
	st, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%w: %s is a directory", ErrNotDuckDB, t.path)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrNotDuckDB, t.path)
	}
	if st.Size() == 0 {
		return nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return err
	}
	head := make([]byte, 12)
	n, _ := io.ReadFull(f, head)
	f.Close()
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("PAR1")):
		return fmt.Errorf("%w: %s is a Parquet file", ErrNotDuckDB, t.path)
	case len(head) < 12 || !bytes.Equal(head[8:12], duckdbMagic):
		return fmt.Errorf("%w: %s is some other kind of file", ErrNotDuckDB, t.path)
	}
	if t.history {
		return t.checkHistoryDate(ctx, date)
	}
	return nil
}

// checkHistoryDate refuses a date earlier than the last snapshot kept. It
// opens the database read-only, so a refused run changes nothing; a file
// another process holds is checked in the transaction instead.
func (t *Target) checkHistoryDate(ctx context.Context, date string) error {
	connector, err := goduckdb.NewConnector(t.path+"?access_mode=read_only", nil)
	if err != nil {
		if isLockConflict(err) {
			return nil
		}
		return fmt.Errorf("open %s: %s", t.path, Clean(err))
	}
	db := sql.OpenDB(connector)
	defer connector.Close()
	defer db.Close()
	return checkHistoryDate(ctx, db, date)
}

// Prepared is a publish made ready: the transaction holds every change.
type Prepared struct {
	t    *Target
	conn *sql.Conn
	db   *sql.DB
	c    *goduckdb.Connector
	tx   *sql.Tx
}

// Prepare opens the database, retrying up to the lock wait while another
// process holds it, begins a transaction and runs every statement of the
// publish: each table replaced by the rows of its staged Parquet file
// (files: table name to path), comments, the history, and run's row in
// the runs table. Nothing is visible before Commit.
func (t *Target) Prepare(ctx context.Context, tables []schemas.Table, files map[string]string, run runs.Record) (_ *Prepared, err error) {
	p := &Prepared{t: t}
	if p.c, err = t.open(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.Rollback()
		}
	}()
	p.db = sql.OpenDB(p.c)
	if p.conn, err = p.db.Conn(ctx); err != nil {
		return nil, fmt.Errorf("open %s: %s", t.path, Clean(err))
	}
	if p.tx, err = p.conn.BeginTx(ctx, nil); err != nil {
		return nil, fmt.Errorf("begin: %s", Clean(err))
	}
	own, err := loadSettings(ctx, p.tx)
	if err != nil {
		return nil, err
	}
	for _, tb := range tables {
		f, ok := files[tb.Name]
		if !ok {
			return nil, fmt.Errorf("no staged file for table %s", tb.Name)
		}
		for _, stmt := range tableStatements(tb, f, run) {
			if _, err := p.tx.ExecContext(ctx, stmt); err != nil {
				return nil, fmt.Errorf("table %s: %s", tb.Name, Clean(err))
			}
		}
	}
	if t.history {
		if err := checkHistoryDate(ctx, p.tx, run.SnapshotDate); err != nil {
			return nil, err
		}
		// Rebuilding the histories windows over every snapshot kept, which
		// grows with the days kept: it runs under DuckDB's own settings
		// (a memory limit of 80% of the memory it finds, every core).
		if err := restoreSettings(ctx, p.tx, own); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		for _, s := range historyStatements(tables, run.RunID, run.SnapshotDate) {
			if _, err := p.tx.ExecContext(ctx, s); err != nil {
				return nil, fmt.Errorf("history: %s", Clean(err))
			}
		}
	}
	if err := upsertRun(ctx, p.tx, run); err != nil {
		return nil, fmt.Errorf("record run: %s", Clean(err))
	}
	return p, nil
}

// open opens the database read-write, retrying while another process
// holds it, for up to the lock wait.
func (t *Target) open(ctx context.Context) (*goduckdb.Connector, error) {
	deadline := time.Now().Add(t.lockWait)
	wait := 100 * time.Millisecond
	logged := false
	for {
		c, err := goduckdb.NewConnector(t.path+"?"+writeSettings(t.path), nil)
		if err == nil {
			return c, nil
		}
		if !isLockConflict(err) {
			return nil, fmt.Errorf("open %s: %s", t.path, Clean(err))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %s is held open by another process for longer than the lock wait (%s)", lock.ErrBusy, t.path, t.lockWait)
		}
		if !logged {
			t.log.Warn().Dur("lock_wait", t.lockWait).Msg("the DuckDB file is held open by another process (a reader?); waiting for it")
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(min(wait, time.Until(deadline)+time.Millisecond)):
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// loadLimits are the DuckDB settings a run loads its tables under: one
// thread, and a cap on what the buffer manager holds, past which DuckDB
// writes to the database file (a table loaded by CREATE TABLE AS goes
// there directly) or spills to TempDir. So the load costs the same memory
// whatever the account's size: about 170 MB above the process's own at
// 400k rows, where two threads and DuckDB's default limit (80% of the
// machine's memory) took 300 MB and more. 128 MB loads 16 KB attributes on
// every row (Twilio's largest); 64 MB does not, nor does it rebuild the
// histories at 400k rows, which run under DuckDB's own settings.
var loadLimits = [][2]string{{"threads", "1"}, {"memory_limit", "128MB"}}

// loadSettings reads DuckDB's own values of the loadLimits settings and
// sets the loadLimits in their place; restoreSettings puts them back.
// (RESET memory_limit would change the setting without the buffer
// manager's limit.)
func loadSettings(ctx context.Context, tx *sql.Tx) (own []string, err error) {
	for _, s := range loadLimits {
		var v string
		if err := tx.QueryRowContext(ctx, "SELECT current_setting("+quoteLiteral(s[0])+")").Scan(&v); err != nil {
			return nil, fmt.Errorf("read setting %s: %s", s[0], Clean(err))
		}
		own = append(own, v)
		if _, err := tx.ExecContext(ctx, "SET "+s[0]+" = "+quoteLiteral(s[1])); err != nil {
			return nil, fmt.Errorf("set %s: %s", s[0], Clean(err))
		}
	}
	return own, nil
}

func restoreSettings(ctx context.Context, tx *sql.Tx, own []string) error {
	for i, s := range loadLimits {
		if _, err := tx.ExecContext(ctx, "SET "+s[0]+" = "+quoteLiteral(own[i])); err != nil {
			return fmt.Errorf("set %s: %s", s[0], Clean(err))
		}
	}
	return nil
}

// TempDir is where DuckDB spills during a publish: inside the database's
// control folder, not beside the file where a reader would see it.
func TempDir(path string) string { return path + ".convsync" + string(filepath.Separator) + "tmp" }

// writeSettings are the DuckDB settings of a database opened to publish,
// as a DSN query.
func writeSettings(path string) string {
	return url.Values{"temp_directory": {TempDir(path)}}.Encode()
}

// isLockConflict reports whether err is DuckDB refusing to open a file
// another process holds.
func isLockConflict(err error) bool {
	return strings.Contains(err.Error(), "Could not set lock on file") || strings.Contains(err.Error(), "Conflicting lock is held")
}

// Commit commits the prepared transaction and folds it into the database
// file. The publish counts as done once the transaction is committed; a
// failure of the checkpoint after it is logged (DuckDB replays its WAL on
// the next open).
func (p *Prepared) Commit() error {
	err := p.tx.Commit()
	p.tx = nil
	if err == nil {
		// Folding the WAL into the file may fail (a full disk) without
		// losing the committed transaction.
		if _, cerr := p.conn.ExecContext(context.Background(), "CHECKPOINT"); cerr != nil {
			p.t.log.Warn().Str("reason", Clean(cerr)).Msg("checkpoint after the commit failed; DuckDB replays its WAL on the next open")
		}
	}
	p.close()
	if err != nil {
		return fmt.Errorf("commit %s: %s", p.t.path, Clean(err))
	}
	return nil
}

// Rollback discards the prepared transaction and closes the database.
func (p *Prepared) Rollback() {
	if p.tx != nil {
		_ = p.tx.Rollback()
		p.tx = nil
	}
	p.close()
}

func (p *Prepared) close() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
	if p.db != nil {
		_ = p.db.Close()
	}
	if p.c != nil {
		_ = p.c.Close()
	}
	p.conn, p.db, p.c = nil, nil, nil
}

// Published reports whether the database holds run runID's row: whether
// its publish was committed.
func (t *Target) Published(ctx context.Context, runID string) (bool, error) {
	if _, err := os.Stat(t.path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	c, err := t.open(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	db := sql.OpenDB(c)
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", RunsTable).Scan(&n); err != nil {
		return false, fmt.Errorf("read %s: %s", t.path, Clean(err))
	}
	if n == 0 {
		return false, nil
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+RunsTable+" WHERE run_id = ?", runID).Scan(&n); err != nil {
		return false, fmt.Errorf("read %s: %s", t.path, Clean(err))
	}
	return n > 0, nil
}

// Publish carries out a decided publish that may have been committed
// already (by a process that died before it could tell): it does nothing
// when the run's row is there, and prepares and commits otherwise.
func (t *Target) Publish(ctx context.Context, tables []schemas.Table, files map[string]string, run runs.Record) error {
	done, err := t.Published(ctx, run.RunID)
	if err != nil || done {
		return err
	}
	p, err := t.Prepare(ctx, tables, files, run)
	if err != nil {
		return err
	}
	return p.Commit()
}

// tableStatements returns the statements replacing t with the rows staged
// in file, and commenting the table and its columns.
func tableStatements(t schemas.Table, file string, run runs.Record) []string {
	name := quoteIdent(t.Name)
	stmts := []string{
		fmt.Sprintf("CREATE OR REPLACE TABLE %s AS SELECT * FROM read_parquet(%s, hive_partitioning = false)", name, quoteLiteral(escapeGlob(file))),
		fmt.Sprintf("COMMENT ON TABLE %s IS %s", name, quoteLiteral(tableComment(t, run))),
	}
	for _, f := range t.Schema.Fields() {
		if c := ColumnComment(f); c != "" {
			stmts = append(stmts, fmt.Sprintf("COMMENT ON COLUMN %s.%s IS %s", name, quoteIdent(f.Name), quoteLiteral(c)))
		}
	}
	return stmts
}

// escapeGlob escapes the characters read_parquet would take for a glob.
func escapeGlob(path string) string {
	if !strings.ContainsAny(path, "*?[]{}") {
		return path
	}
	var b strings.Builder
	for _, r := range path {
		if strings.ContainsRune("*?[]{}", r) {
			b.WriteByte('[')
			b.WriteRune(r)
			b.WriteByte(']')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func tableComment(t schemas.Table, run runs.Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "convsync snapshot %s of %s", run.SnapshotDate, t.Name)
	if t.APIKind != "" {
		fmt.Fprintf(&b, " (Twilio %s)", t.APIKind)
	}
	if key := t.Key(); len(key) > 0 {
		fmt.Fprintf(&b, "; key (%s)", strings.Join(key, ", "))
	}
	fmt.Fprintf(&b, "; run %s", run.RunID)
	if run.PII != "" {
		fmt.Fprintf(&b, "; pii mode %s", run.PII)
	}
	return b.String()
}

// ColumnComment is the DuckDB column comment for f: "pii:<class>" for a
// field with convsync.pii metadata, followed by "; <convsync.comment>" if
// the field has one; the convsync.comment alone for other fields; "" if
// neither.
func ColumnComment(f arrow.Field) string {
	pii, note := schemas.Meta(f, schemas.MetaPII), schemas.Meta(f, schemas.MetaComment)
	switch {
	case pii != "" && note != "":
		return "pii:" + pii + "; " + note
	case pii != "":
		return "pii:" + pii
	default:
		return note
	}
}

// runsColumns are the columns of the runs table beyond rows_<table>, in
// order, with their types.
var runsColumns = [][2]string{
	{"run_id", "VARCHAR PRIMARY KEY"}, {"command", "VARCHAR"}, {"version", "VARCHAR"}, {"snapshot_date", "DATE"},
	{"started_at", "TIMESTAMPTZ"}, {"ended_at", "TIMESTAMPTZ"}, {"status", "VARCHAR"}, {"pii", "VARCHAR"},
	{"requests", "BIGINT"}, {"retries", "BIGINT"}, {"throttled", "BIGINT"}, {"duplicates", "BIGINT"}, {"parents_skipped", "BIGINT"},
	{"concurrency_limit", "INTEGER"}, {"services", "VARCHAR[]"}, {"rows", "MAP(VARCHAR, BIGINT)"}, {"unknown_fields", "VARCHAR"},
}

// upsertRun creates the runs table if needed (adding the columns an older
// convsync did not write), adds rows_<table> columns, and inserts or
// replaces run's row, so that publishing a run twice leaves one row.
func upsertRun(ctx context.Context, tx *sql.Tx, run runs.Record) error {
	run = run.Normalized()
	var defs []string
	for _, c := range runsColumns {
		defs = append(defs, c[0]+" "+c[1])
	}
	stmts := []string{"CREATE TABLE IF NOT EXISTS runs (" + strings.Join(defs, ", ") + ")"}
	for _, c := range runsColumns[1:] {
		stmts = append(stmts, "ALTER TABLE runs ADD COLUMN IF NOT EXISTS "+c[0]+" "+c[1])
	}
	stmts = append(stmts, "COMMENT ON TABLE runs IS "+quoteLiteral("one row per published convsync run; rows_<table> columns repeat rows[<table>]"))
	tables := slices.Sorted(maps.Keys(run.Rows))
	unknown, err := json.Marshal(run.UnknownFields)
	if err != nil {
		return err
	}
	cols := []string{"run_id", "command", "version", "snapshot_date", "started_at", "ended_at", "status", "pii",
		"requests", "retries", "throttled", "duplicates", "parents_skipped", "concurrency_limit", "services", "rows", "unknown_fields"}
	vals := []string{"?", "?", "?", "?::DATE", "?::TIMESTAMPTZ", "?::TIMESTAMPTZ", "?", "?", "?", "?", "?", "?", "?", "?",
		stringList(run.Services), rowsMap(run.Rows, tables), "?"}
	for _, t := range tables {
		col := quoteIdent("rows_" + t)
		stmts = append(stmts, "ALTER TABLE runs ADD COLUMN IF NOT EXISTS "+col+" BIGINT")
		cols = append(cols, col)
		vals = append(vals, fmt.Sprint(run.Rows[t]))
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	insert := fmt.Sprintf("INSERT OR REPLACE INTO runs (%s) VALUES (%s)", strings.Join(cols, ", "), strings.Join(vals, ", "))
	_, err = tx.ExecContext(ctx, insert,
		run.RunID, nullString(run.Command), nullString(run.Version), run.SnapshotDate, timestampTZ(run.StartedAt), timestampTZ(run.EndedAt),
		nullString(run.Status), nullString(run.PII), run.Requests, run.Retries, run.Throttled, run.Duplicates, run.ParentsSkipped,
		run.ConcurrencyLimit, string(unknown))
	return err
}

// timestampTZ renders t as a TIMESTAMPTZ literal in UTC; NULL for the zero time.
func timestampTZ(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02 15:04:05.999999") + "+00"
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func stringList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quoteLiteral(s)
	}
	return "[" + strings.Join(q, ", ") + "]::VARCHAR[]"
}

func rowsMap(rows map[string]int64, keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = fmt.Sprintf("%s: %d", quoteLiteral(k), rows[k])
	}
	return "MAP {" + strings.Join(q, ", ") + "}::MAP(VARCHAR, BIGINT)"
}

// quoteIdent quotes a SQL identifier for DuckDB.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteLiteral quotes a SQL string literal for DuckDB.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Clean returns DuckDB's error message as one line: its first paragraph,
// without the stack trace and the extra lines DuckDB appends.
func Clean(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	for _, cut := range []string{"Stack Trace", "\n\n"} {
		if i := strings.Index(s, cut); i > 0 {
			s = s[:i]
		}
	}
	return strings.Join(strings.Fields(s), " ")
}
