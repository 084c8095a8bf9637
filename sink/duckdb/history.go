package duckdb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/convsync/convsync/schemas"
)

// History tables kept by a target opened with History:
//
//   - SnapshotDatesTable: one row per snapshot date kept (snapshot_date, run_id).
//   - <table>_snapshots: every kept snapshot of <table>, with snapshot_date first.
//   - <table>_history, for a table with tracked columns (schemas.MetaHistory;
//     participants_history): one row per key per stretch of time in which
//     the tracked columns stayed the same, with the carried columns,
//     valid_from (first snapshot date of the stretch) and valid_to (first
//     snapshot date at which the row was gone or changed; NULL while
//     current). A change back starts a new stretch too.
const (
	SnapshotDatesTable = "snapshot_dates"
	snapshotsSuffix    = "_snapshots"
)

// ErrHistoryDate is returned when a history run is filed under a date
// earlier than the last snapshot kept.
var ErrHistoryDate = errors.New("the snapshot date is earlier than the last snapshot kept")

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func checkHistoryDate(ctx context.Context, q querier, date string) error {
	var exists int
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", SnapshotDatesTable).Scan(&exists); err != nil {
		return err
	}
	if exists == 0 {
		return nil
	}
	var last sql.NullString
	if err := q.QueryRowContext(ctx, "SELECT strftime(max(snapshot_date), '%Y-%m-%d') FROM "+SnapshotDatesTable).Scan(&last); err != nil {
		return err
	}
	if last.Valid && date < last.String {
		return fmt.Errorf("%w (%s < %s)", ErrHistoryDate, date, last.String)
	}
	return nil
}

// historyStatements files the tables just replaced under date and
// rebuilds the history of every table with tracked columns.
func historyStatements(tables []schemas.Table, runID, date string) []string {
	d := "DATE " + quoteLiteral(date)
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS " + SnapshotDatesTable + " (snapshot_date DATE PRIMARY KEY, run_id VARCHAR)",
		"DELETE FROM " + SnapshotDatesTable + " WHERE snapshot_date = " + d,
		"INSERT INTO " + SnapshotDatesTable + " VALUES (" + d + ", " + quoteLiteral(runID) + ")",
	}
	for _, t := range tables {
		name, snaps := quoteIdent(t.Name), quoteIdent(t.Name+snapshotsSuffix)
		stmts = append(stmts,
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s AS SELECT %s AS snapshot_date, * FROM %s LIMIT 0", snaps, d, name),
			fmt.Sprintf("DELETE FROM %s WHERE snapshot_date = %s", snaps, d),
			fmt.Sprintf("INSERT INTO %s BY NAME SELECT %s AS snapshot_date, * FROM %s", snaps, d, name),
			fmt.Sprintf("COMMENT ON TABLE %s IS %s", snaps, quoteLiteral("every snapshot of "+t.Name+" kept by convsync (the history of its exports)")),
		)
		if h := t.HistoryName(); h != "" {
			tracked, _ := t.History()
			stmts = append(stmts, historySQL(t),
				"COMMENT ON TABLE "+quoteIdent(h)+" IS "+quoteLiteral(fmt.Sprintf(
					"one row per %s per stretch in which %s stayed the same; valid_to is the first snapshot date at which it was gone or changed, NULL while current",
					strings.Join(t.Key(), ", "), strings.Join(tracked, ", "))))
		}
	}
	return stmts
}

// historySQL rebuilds t's history from every kept snapshot (gaps and
// islands): a row starts a new stretch unless the same key was present at
// the previous snapshot date with the same tracked columns.
func historySQL(t schemas.Table) string {
	tracked, carried := t.History()
	key := t.Key()
	var state []string
	for _, c := range tracked {
		state = append(state, quoteIdent(c)+" := "+quoteIdent(c))
	}
	st := "struct_pack(" + strings.Join(state, ", ") + ")"
	keys := idents("", key)
	return `CREATE OR REPLACE TABLE ` + quoteIdent(t.HistoryName()) + ` AS
WITH dates AS (
    SELECT snapshot_date,
           lag(snapshot_date) OVER (ORDER BY snapshot_date) AS prev_date,
           lead(snapshot_date) OVER (ORDER BY snapshot_date) AS next_date
    FROM ` + SnapshotDatesTable + `
), s AS (
    SELECT p.snapshot_date, d.prev_date, ` + idents("p.", key) + `, ` + idents("p.", carried) + `, ` + idents("p.", tracked) + `,
           ` + st + ` AS state,
           lag(p.snapshot_date) OVER w AS seen_date,
           lag(` + st + `) OVER w AS seen_state
    FROM ` + quoteIdent(t.Name+snapshotsSuffix) + ` p JOIN dates d USING (snapshot_date)
    WINDOW w AS (PARTITION BY ` + idents("p.", key) + ` ORDER BY p.snapshot_date)
), marked AS (
    SELECT *, CASE WHEN seen_date IS NOT NULL AND seen_date = prev_date
                         AND seen_state IS NOT DISTINCT FROM state THEN 0 ELSE 1 END AS starts
    FROM s
), stretches AS (
    SELECT *, sum(starts) OVER (PARTITION BY ` + keys + ` ORDER BY snapshot_date) AS stretch FROM marked
), spans AS (
    SELECT ` + keys + `, stretch, min(snapshot_date) AS valid_from, max(snapshot_date) AS last_date,
           ` + anyValues(carried) + `, ` + anyValues(tracked) + `
    FROM stretches GROUP BY ` + keys + `, stretch
)
SELECT ` + idents("sp.", key) + `, ` + idents("sp.", carried) + `, ` + idents("sp.", tracked) + `,
       sp.valid_from, d.next_date AS valid_to
FROM spans sp JOIN dates d ON d.snapshot_date = sp.last_date
ORDER BY ` + idents("sp.", key) + `, sp.valid_from`
}

func idents(prefix string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + quoteIdent(c)
	}
	return strings.Join(out, ", ")
}

func anyValues(cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = "any_value(" + quoteIdent(c) + ") AS " + quoteIdent(c)
	}
	return strings.Join(out, ", ")
}
