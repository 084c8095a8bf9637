package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/marcboeker/go-duckdb/v2"

	"github.com/convsync/convsync/schemas"
)

// History tables kept in DuckDB by a sink opened WithHistory:
//
//   - SnapshotDatesTable: one row per snapshot date kept (snapshot_date, run_id).
//   - <table>_snapshots: every kept snapshot of <table>, with snapshot_date first.
//   - ParticipantsHistoryTable: one row per participant per stretch of time in
//     which its identity, role_sid and messaging_binding_* columns stayed the
//     same, with valid_from (first snapshot date of the stretch) and valid_to
//     (first snapshot date at which the participant was gone or changed; NULL
//     while current). A change back starts a new stretch too.
const (
	SnapshotDatesTable       = "snapshot_dates"
	ParticipantsHistoryTable = "participants_history"
	snapshotsSuffix          = "_snapshots"
)

// ErrHistoryDate is returned when a history run is filed under a date
// earlier than the last snapshot kept.
var ErrHistoryDate = errors.New("--history: snapshot date is earlier than the last snapshot kept")

// WithHistory makes a DuckDB sink keep every snapshot and maintain
// participants_history (see SnapshotDatesTable).
func WithHistory() Option {
	return func(o *options) { o.history = true }
}

// historyColumns are the participant columns whose change starts a new stretch.
var historyColumns = []string{
	"identity", "role_sid",
	"messaging_binding_type", "messaging_binding_address", "messaging_binding_proxy_address",
	"messaging_binding_projected_address", "messaging_binding_name", "messaging_binding_level",
}

// CheckHistoryDate reports ErrHistoryDate when the database at path keeps
// a snapshot later than date (YYYY-MM-DD). It opens the database read-only,
// so a refused run changes nothing; a missing file is fine.
func CheckHistoryDate(ctx context.Context, path, date string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	connector, err := duckdb.NewConnector(path+"?access_mode=read_only", nil)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	defer connector.Close()
	return checkHistoryDate(ctx, db, date)
}

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

// recordHistory files the tables just replaced under date, inside tx.
func recordHistory(ctx context.Context, tx *sql.Tx, tables []schemas.Table, runID, date string) error {
	if err := checkHistoryDate(ctx, tx, date); err != nil {
		return err
	}
	d := "DATE " + quoteLiteral(date)
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS " + SnapshotDatesTable + " (snapshot_date DATE PRIMARY KEY, run_id VARCHAR)",
		"DELETE FROM " + SnapshotDatesTable + " WHERE snapshot_date = " + d,
		"INSERT INTO " + SnapshotDatesTable + " VALUES (" + d + ", " + quoteLiteral(runID) + ")",
	}
	participants := false
	for _, t := range tables {
		name, snaps := quoteIdent(t.Name), quoteIdent(t.Name+snapshotsSuffix)
		stmts = append(stmts,
			fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s AS SELECT %s AS snapshot_date, * FROM %s LIMIT 0", snaps, d, name),
			fmt.Sprintf("DELETE FROM %s WHERE snapshot_date = %s", snaps, d),
			fmt.Sprintf("INSERT INTO %s BY NAME SELECT %s AS snapshot_date, * FROM %s", snaps, d, name),
			fmt.Sprintf("COMMENT ON TABLE %s IS %s", snaps, quoteLiteral("every snapshot of "+t.Name+" kept by convsync export --history")),
		)
		participants = participants || t.Name == schemas.Participants.Name
	}
	if participants {
		stmts = append(stmts, participantsHistorySQL(),
			"COMMENT ON TABLE "+ParticipantsHistoryTable+" IS "+quoteLiteral(
				"one row per participant per stretch in which identity, role_sid and messaging_binding_* stayed the same; valid_to is the first snapshot date at which it was gone or changed, NULL while current"))
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	return nil
}

// participantsHistorySQL rebuilds participants_history from every kept
// snapshot (gaps and islands): a row starts a new stretch unless the same
// participant was present at the previous snapshot date with the same
// tracked columns.
func participantsHistorySQL() string {
	var state []string
	for _, c := range historyColumns {
		state = append(state, c+" := "+c)
	}
	st := "struct_pack(" + strings.Join(state, ", ") + ")"
	return `CREATE OR REPLACE TABLE ` + ParticipantsHistoryTable + ` AS
WITH dates AS (
    SELECT snapshot_date,
           lag(snapshot_date) OVER (ORDER BY snapshot_date) AS prev_date,
           lead(snapshot_date) OVER (ORDER BY snapshot_date) AS next_date
    FROM ` + SnapshotDatesTable + `
), s AS (
    SELECT p.snapshot_date, d.prev_date, p.sid, p.conversation_sid, p.chat_service_sid, ` + prefixed("p.", historyColumns) + `,
           ` + st + ` AS state,
           lag(p.snapshot_date) OVER w AS seen_date,
           lag(` + st + `) OVER w AS seen_state
    FROM participants` + snapshotsSuffix + ` p JOIN dates d USING (snapshot_date)
    WINDOW w AS (PARTITION BY p.sid ORDER BY p.snapshot_date)
), marked AS (
    SELECT *, CASE WHEN seen_date IS NOT NULL AND seen_date = prev_date
                         AND seen_state IS NOT DISTINCT FROM state THEN 0 ELSE 1 END AS starts
    FROM s
), stretches AS (
    SELECT *, sum(starts) OVER (PARTITION BY sid ORDER BY snapshot_date) AS stretch FROM marked
), spans AS (
    SELECT sid, stretch, min(snapshot_date) AS valid_from, max(snapshot_date) AS last_date,
           any_value(conversation_sid) AS conversation_sid, any_value(chat_service_sid) AS chat_service_sid,
           ` + anyValues(historyColumns) + `
    FROM stretches GROUP BY sid, stretch
)
SELECT sp.sid, sp.conversation_sid, sp.chat_service_sid, ` + prefixed("sp.", historyColumns) + `,
       sp.valid_from, d.next_date AS valid_to
FROM spans sp JOIN dates d ON d.snapshot_date = sp.last_date
ORDER BY sp.sid, sp.valid_from`
}

func prefixed(p string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = p + c
	}
	return strings.Join(out, ", ")
}

func anyValues(cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = "any_value(" + c + ") AS " + c
	}
	return strings.Join(out, ", ")
}
