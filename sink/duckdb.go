package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/marcboeker/go-duckdb/v2"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/schemas"
)

// RunsTable is the DuckDB table holding one row per committed run:
//
//	CREATE TABLE runs (
//	    run_id          VARCHAR PRIMARY KEY,
//	    command         VARCHAR,      -- export | lookup
//	    snapshot_date   DATE,
//	    started_at      TIMESTAMPTZ,
//	    ended_at        TIMESTAMPTZ,
//	    status          VARCHAR,      -- succeeded
//	    pii             VARCHAR,      -- keep | hash | redact
//	    requests        BIGINT,
//	    retries         BIGINT,
//	    parents_skipped BIGINT,
//	    services        VARCHAR[],    -- service SIDs walked
//	    rows            MAP(VARCHAR, BIGINT), -- rows written per table
//	    rows_<table>    BIGINT, ...   -- the same, one column per table ever written
//	)
//
// A rows_<table> column is added the first time a run writes that table
// and is NULL for runs that did not write it, so both
//
//	SELECT run_id, rows_participants FROM runs ORDER BY started_at
//	SELECT run_id, rows['participants'] FROM runs
//
// work.
const RunsTable = "runs"

// DuckDB is a Sink writing each table into a DuckDB database file as a
// table of the same name holding the run's snapshot.
//
// Write streams batches to Parquet files staged beside the database
// (<path>.convsync-staging-<runID>/) and never opens the database, so a
// run that fails before Commit leaves the file byte-for-byte unchanged.
// Commit opens the database and, in one transaction, replaces every table
// of the run (CREATE OR REPLACE TABLE ... AS SELECT * FROM read_parquet),
// sets table and column comments, and inserts the run's row into
// RunsTable; then it checkpoints and closes the database. Readers see the
// old snapshot or the new one, never a mix. Tables not in the sink (the
// export's, for a lookup run) are left alone.
//
// Columns come out as VARCHAR, BIGINT, BOOLEAN and TIMESTAMP WITH TIME
// ZONE. Every column with convsync.pii metadata gets a comment starting
// "pii:<class>" (followed by "; <convsync.comment>" if any), other columns
// with a convsync.comment get that text, so an auditor lists every PII
// column with
//
//	SELECT table_name, column_name, comment FROM duckdb_columns() WHERE comment LIKE 'pii:%'
type DuckDB struct {
	*staged
	path    string
	tables  []schemas.Table
	log     zerolog.Logger
	history bool
}

// NewDuckDB prepares a DuckDB sink writing tables into the database file
// at path (created on Commit if missing) for the run runID filed under
// snapshotDate. The database is not opened before Commit.
func NewDuckDB(path string, tables []schemas.Table, runID string, snapshotDate time.Time, opts ...Option) (*DuckDB, error) {
	if err := checkName("run ID", runID); err != nil {
		return nil, err
	}
	if err := checkTables(tables); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("empty database path")
	}
	o := newOptions(opts)
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, err
	}
	// read_parquet would take a path with glob characters for a pattern:
	// such a database stages in the temporary directory instead.
	sd, err := openStaged(abs+stagingPrefix+runID, true, runID, snapshotDate, tables, o,
		func(t schemas.Table) string { return t.Name })
	if err != nil {
		return nil, err
	}
	return &DuckDB{
		staged:  sd,
		path:    abs,
		tables:  tables,
		history: o.history,
		log:     o.log.With().Str("sink", "duckdb").Str("path", abs).Logger(),
	}, nil
}

// Suspend ends a run that failed: like Close, but when a checkpoint was
// written the staging folder stays for a later run to resume. The database
// file is not touched either way.
func (d *DuckDB) Suspend() error { return d.suspend(d.Close) }

// Commit publishes the run's tables and its runs row in one transaction,
// checkpoints and closes the database and removes the staged files. On
// error the database keeps its previous contents.
func (d *DuckDB) Commit(ctx context.Context, run Run) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	run, err := d.finish(ctx, run)
	if err != nil {
		return fmt.Errorf("duckdb sink: %w", err)
	}
	if err := d.load(ctx, run); err != nil {
		return fmt.Errorf("duckdb sink: %w", err)
	}
	d.committed = true
	if err := os.RemoveAll(d.staging); err != nil {
		d.log.Warn().Err(err).Str("staging", d.staging).Msg("remove staging folder")
	}
	for _, t := range d.tables {
		d.log.Info().Str("table", t.Name).Int64("rows", run.Rows[t.Name]).Str("snapshot_date", d.date).Msg("published")
	}
	return nil
}

// load runs the transaction, then checkpoints.
func (d *DuckDB) load(ctx context.Context, run Run) (err error) {
	connector, err := duckdb.NewConnector(d.path, nil)
	if err != nil {
		return fmt.Errorf("open %s: %w", d.path, err)
	}
	db := sql.OpenDB(connector)
	defer func() {
		err = errors.Join(err, db.Close(), connector.Close())
	}()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open %s: %w", d.path, err)
	}
	defer func() { err = errors.Join(err, conn.Close()) }()

	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	files := d.st.paths()
	for _, t := range d.tables {
		for _, stmt := range tableStatements(t, files[t.Name], run, d.date) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("table %s: %w", t.Name, err)
			}
		}
	}
	if d.history {
		if err := recordHistory(ctx, tx, d.tables, d.runID, d.date); err != nil {
			return err
		}
	}
	if err := insertRun(ctx, tx, run); err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	// The transaction is durable in the WAL; fold it into the file.
	if _, err := conn.ExecContext(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// tableStatements returns the statements replacing t with the rows staged
// in file, and commenting the table and its columns.
func tableStatements(t schemas.Table, files []string, run Run, date string) []string {
	name := quoteIdent(t.Name)
	quoted := make([]string, len(files))
	for i, f := range files {
		quoted[i] = quoteLiteral(f)
	}
	stmts := []string{
		fmt.Sprintf("CREATE OR REPLACE TABLE %s AS SELECT * FROM read_parquet([%s], hive_partitioning = false)", name, strings.Join(quoted, ", ")),
		fmt.Sprintf("COMMENT ON TABLE %s IS %s", name, quoteLiteral(tableComment(t, run, date))),
	}
	for _, f := range t.Schema.Fields() {
		if c := ColumnComment(f); c != "" {
			stmts = append(stmts, fmt.Sprintf("COMMENT ON COLUMN %s.%s IS %s", name, quoteIdent(f.Name), quoteLiteral(c)))
		}
	}
	return stmts
}

func tableComment(t schemas.Table, run Run, date string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "convsync snapshot %s of %s", date, t.Name)
	if t.APIKind != "" {
		fmt.Fprintf(&b, " (Twilio %s)", t.APIKind)
	}
	if len(t.Key) > 0 {
		fmt.Fprintf(&b, "; key (%s)", strings.Join(t.Key, ", "))
	}
	fmt.Fprintf(&b, "; run %s", run.ID)
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

// insertRun creates RunsTable if needed, adds rows_<table> columns, and
// inserts run's row.
func insertRun(ctx context.Context, tx *sql.Tx, run Run) error {
	stmts := []string{`CREATE TABLE IF NOT EXISTS runs (
	run_id VARCHAR PRIMARY KEY,
	command VARCHAR,
	snapshot_date DATE,
	started_at TIMESTAMPTZ,
	ended_at TIMESTAMPTZ,
	status VARCHAR,
	pii VARCHAR,
	requests BIGINT,
	retries BIGINT,
	parents_skipped BIGINT,
	services VARCHAR[],
	rows MAP(VARCHAR, BIGINT))`,
		"COMMENT ON TABLE runs IS " + quoteLiteral("one row per committed convsync run; rows_<table> columns repeat rows[<table>]"),
	}
	tables := slices.Sorted(maps.Keys(run.Rows))
	cols := []string{"run_id", "command", "snapshot_date", "started_at", "ended_at", "status", "pii", "requests", "retries", "parents_skipped", "services", "rows"}
	vals := []string{"?", "?", "?::DATE", "?::TIMESTAMPTZ", "?::TIMESTAMPTZ", "?", "?", "?", "?", "?", stringList(run.Services), rowsMap(run.Rows, tables)}
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
	insert := fmt.Sprintf("INSERT INTO runs (%s) VALUES (%s)", strings.Join(cols, ", "), strings.Join(vals, ", "))
	_, err := tx.ExecContext(ctx, insert,
		run.ID, nullString(run.Command), civilDate(run.SnapshotDate), timestampTZ(run.Started), timestampTZ(run.Ended),
		nullString(run.Status), nullString(run.PII), run.Requests, run.Retries, run.ParentsSkipped)
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

// Close ends the sink. Without a successful Commit it removes the staged
// files and never opens the database. It is idempotent and joins errors.
func (d *DuckDB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.committed {
		return nil
	}
	return errors.Join(d.st.abort(), os.RemoveAll(d.staging))
}
