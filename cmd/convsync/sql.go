package main

import (
	"bufio"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	duckdb "github.com/marcboeker/go-duckdb/v2"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/sink"
)

// sqlUsage is the one-line synopsis of `convsync sql`.
const sqlUsage = "usage: convsync sql [--duckdb FILE | --parquet DIR] [--format table|csv|json] QUERY"

// sqlFlags are the flags and the argument of `convsync sql`.
type sqlFlags struct {
	DuckDB  string
	Parquet string
	Format  string
	Query   string
}

// runSQL runs one read-only query over an export's outputs with the
// embedded DuckDB and prints the result (see README.md, convsync sql).
func runSQL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseSQLFlags(args, stderr)
	if err != nil {
		return err
	}
	// A publish a dead run left half done is finished first, so that the
	// outputs agree when they are read.
	pq := f.Parquet
	if strings.Contains(pq, "://") {
		pq = "" // refused below
	}
	if err := sink.Recover(ctx, sink.Config{DuckDB: f.DuckDB, Parquet: pq, LockWait: defaultLockWait,
		Logger: newLogger(stderr, stderrIsTerminal(stderr), zerolog.WarnLevel)}); err != nil {
		return outputError(fmt.Errorf("finish an interrupted publish: %w", err))
	}
	// DuckDB spills big sorts and joins into a folder beside the
	// database (or ./.tmp): give it a private one instead, removed at the
	// end, so nothing is written next to the outputs.
	tmp, err := os.MkdirTemp("", "convsync-sql-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	db, err := f.open()
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return sqlError(err)
	}
	defer conn.Close()
	for _, set := range []string{
		// Everything convsync writes is in UTC and prints in UTC; casts
		// and date_trunc should work in UTC too, whatever the machine's
		// time zone.
		"SET TimeZone = 'UTC'",
		"SET temp_directory = " + sqlString(tmp),
		// No extension downloads into ~/.duckdb either.
		"SET autoinstall_known_extensions = false",
	} {
		if _, err := conn.ExecContext(ctx, set); err != nil {
			return sqlError(err)
		}
	}
	if f.Parquet != "" {
		if err := createParquetViews(ctx, conn, f.Parquet); err != nil {
			return err
		}
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*duckdb.Conn)
		if !ok {
			return fmt.Errorf("unexpected DuckDB connection %T", dc)
		}
		return querySQL(ctx, c, f.Query, newResultWriter(f.Format, out))
	})
	if ferr := out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write the result: %w", ferr)
	}
	return err
}

// parseSQLFlags parses the command line of `convsync sql`. Flags may come
// before or after QUERY; a QUERY that starts with "-" goes after "--".
func parseSQLFlags(args []string, stderr io.Writer) (sqlFlags, error) {
	var f sqlFlags
	flags := flag.NewFlagSet("convsync sql", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	flags.StringVar(&f.DuckDB, "duckdb", "", "query this DuckDB database `file`, opened read-only (default convsync.duckdb unless --parquet is given)")
	flags.StringVar(&f.Parquet, "parquet", "", "query the Parquet datasets under `dir`: DIR/<table>/ is the view <table>, DIR/_runs/*.json the view runs")
	flags.StringVar(&f.Format, "format", "table", "output `format`: table (aligned columns, for people), csv (RFC 4180 with a header row) or json (one object a line)")
	registerConfigFlag(flags)
	var pos []string
	rest := args
	for {
		if err := flags.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				flags.SetOutput(stderr)
				fmt.Fprintln(stderr, sqlUsage)
				fmt.Fprintln(stderr, "\nRuns one SQL query with the embedded DuckDB over an export's outputs, opened read-only, and prints the result.")
				flags.PrintDefaults()
				return f, errHelp
			}
			return f, usageError("%v (%s)", err, sqlUsage)
		}
		consumed := len(rest) - flags.NArg()
		afterDashes := consumed > 0 && rest[consumed-1] == "--"
		rest = flags.Args()
		if afterDashes {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		rest = rest[1:]
	}
	// One output is read: the environment or a config file written for
	// export may give both.
	if err := applySettings(flags, stderr, []string{"duckdb", "parquet"}); err != nil {
		return f, err
	}
	switch {
	case len(pos) == 0:
		return f, usageError("sql needs a QUERY (%s)", sqlUsage)
	case len(pos) > 1:
		return f, usageError("sql takes one QUERY, got %d arguments: quote the query (%s)", len(pos), sqlUsage)
	case strings.TrimSpace(pos[0]) == "":
		return f, usageError("the QUERY is empty (%s)", sqlUsage)
	}
	f.Query = pos[0]
	switch f.Format {
	case "table", "csv", "json":
	default:
		return f, usageError("--format %q is not one of table, csv, json", f.Format)
	}
	if f.DuckDB != "" && f.Parquet != "" {
		return f, usageError("give --duckdb FILE or --parquet DIR, not both")
	}
	if f.DuckDB == "" && f.Parquet == "" {
		f.DuckDB = "convsync.duckdb" // as export
	}
	return f, nil
}

// open opens the output to query: the DuckDB file read-only, or an
// in-memory database for the Parquet datasets (their views are created by
// createParquetViews).
func (f sqlFlags) open() (*sql.DB, error) {
	dsn := ""
	if f.DuckDB != "" {
		if err := checkDuckDBFile(f.DuckDB); err != nil {
			return nil, err
		}
		dsn = f.DuckDB + "?access_mode=read_only"
	} else if err := checkParquetDir(f.Parquet); err != nil {
		return nil, err
	}
	connector, err := duckdb.NewConnector(dsn, nil)
	if err != nil {
		msg := duckDBMessage(err)
		if strings.Contains(msg, "Could not set lock") {
			return nil, &exitError{code: 75, err: fmt.Errorf("--duckdb %s is locked by another process (a convsync run publishing into it, or a DuckDB client writing); try again later: %s", f.DuckDB, msg)}
		}
		if f.DuckDB != "" {
			return nil, &exitError{code: 1, err: fmt.Errorf("--duckdb %s: %s", f.DuckDB, msg)}
		}
		return nil, sqlError(err)
	}
	return sql.OpenDB(connector), nil
}

// checkDuckDBFile refuses, with exit 2, a --duckdb path that is not an
// existing DuckDB database: DuckDB would create a new, empty one.
func checkDuckDBFile(path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usageError("--duckdb %s: no such file (convsync sql reads the database an export wrote)", path)
	case err != nil:
		return usageError("--duckdb %s: %v", path, err)
	case st.IsDir():
		return usageError("--duckdb %s is a folder, not a DuckDB database file (for Parquet datasets use --parquet DIR)", path)
	}
	fh, err := os.Open(path)
	if err != nil {
		return usageError("--duckdb %s: %v", path, err)
	}
	defer fh.Close()
	var head [12]byte
	n, _ := io.ReadFull(fh, head[:])
	switch {
	case n == len(head) && string(head[8:12]) == "DUCK":
		return nil
	case n >= 4 && string(head[:4]) == "PAR1":
		return usageError("--duckdb %s is a Parquet file, not a DuckDB database (for a folder of Parquet datasets use --parquet DIR)", path)
	default:
		return usageError("--duckdb %s is not a DuckDB database file", path)
	}
}

// checkParquetDir refuses, with exit 2, a --parquet path that is not a local
// folder.
func checkParquetDir(dir string) error {
	if strings.Contains(dir, "://") {
		return usageError("--parquet %s: convsync sql reads a local folder, not a bucket URL", dir)
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usageError("--parquet %s: no such folder", dir)
	case err != nil:
		return usageError("--parquet %s: %v", dir, err)
	case !st.IsDir():
		return usageError("--parquet %s is a file, not a folder of Parquet datasets (DIR/<table>/...)", dir)
	}
	return nil
}

// createParquetViews makes every table folder DIR/<table>/ holding Parquet
// files a view named <table>, read with hive partitioning (so
// snapshot_date is a column), and DIR/_runs/*.json the view runs.
func createParquetViews(ctx context.Context, conn *sql.Conn, dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return usageError("--parquet %s: %v", dir, err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return usageError("--parquet %s: %v", dir, err)
	}
	views := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		// Staging (.convsync-staging-*) and _runs are not datasets.
		if !e.IsDir() || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			continue
		}
		files := parquetFiles(filepath.Join(abs, name))
		if len(files) == 0 {
			continue
		}
		src := sqlString(filepath.Join(abs, name, "**", "*.parquet"))
		if hasGlobMeta(filepath.Join(abs, name)) {
			// DuckDB would read the folder's own name as a pattern.
			src = sqlList(files)
		}
		q := fmt.Sprintf("CREATE VIEW %s AS SELECT * FROM read_parquet(%s, hive_partitioning = true, union_by_name = true)", sqlIdent(name), src)
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("--parquet %s: read the dataset %s: %s", dir, name, duckDBMessage(err))}
		}
		views[name] = true
	}
	runsDir := filepath.Join(abs, "_runs")
	if records := jsonFiles(runsDir); !views["runs"] && len(records) > 0 {
		src := sqlString(filepath.Join(runsDir, "*.json"))
		if hasGlobMeta(runsDir) {
			src = sqlList(records)
		}
		if err := createRunsView(ctx, conn, src); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("--parquet %s: read the run records in _runs: %s", dir, duckDBMessage(err))}
		}
		views["runs"] = true
	}
	if len(views) == 0 {
		return usageError("--parquet %s holds no Parquet datasets (no DIR/<table>/ folder with .parquet files)", dir)
	}
	return nil
}

// createRunsView makes the run records files (an SQL string or list) a
// view named runs, with the columns DuckDB's runs table has: the *_at times
// as TIMESTAMPTZ, and the rows per table as rows_<table> columns besides
// the rows struct.
func createRunsView(ctx context.Context, conn *sql.Conn, files string) error {
	src := fmt.Sprintf("read_json_auto(%s, union_by_name = true)", files)
	cols, err := describe(ctx, conn, "SELECT * FROM "+src)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, c := range cols {
		have[c[0]] = true
	}
	var list, extra []string
	for _, c := range cols {
		name, typ := c[0], c[1]
		if strings.HasSuffix(name, "_at") && typ == "VARCHAR" {
			list = append(list, fmt.Sprintf("TRY_CAST(%s AS TIMESTAMPTZ) AS %s", sqlIdent(name), sqlIdent(name)))
		} else {
			list = append(list, sqlIdent(name))
		}
		if name == "rows" && strings.HasPrefix(typ, "STRUCT(") {
			fields, err := describe(ctx, conn, "SELECT "+sqlIdent(name)+".* FROM "+src)
			if err != nil {
				return err
			}
			for _, fl := range fields {
				if n := "rows_" + fl[0]; !have[n] {
					extra = append(extra, fmt.Sprintf("%s.%s AS %s", sqlIdent(name), sqlIdent(fl[0]), sqlIdent(n)))
					have[n] = true
				}
			}
		}
	}
	if len(list) == 0 {
		return errors.New("no columns")
	}
	_, err = conn.ExecContext(ctx, "CREATE VIEW runs AS SELECT "+strings.Join(append(list, extra...), ", ")+" FROM "+src)
	return err
}

// describe returns the column names and types of query's result.
func describe(ctx context.Context, conn *sql.Conn, query string) ([][2]string, error) {
	rows, err := conn.QueryContext(ctx, "SELECT column_name, column_type FROM (DESCRIBE "+query+")")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][2]string
	for rows.Next() {
		var c [2]string
		if err := rows.Scan(&c[0], &c[1]); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// parquetFiles lists the .parquet files under dir, skipping hidden folders.
func parquetFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && p != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".parquet") {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// jsonFiles lists the .json files in dir.
func jsonFiles(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// hasGlobMeta reports whether DuckDB would read p as a glob pattern.
func hasGlobMeta(p string) bool { return strings.ContainsAny(p, "*?[]") }

// sqlIdent quotes an SQL identifier.
func sqlIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// sqlString quotes an SQL string literal.
func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// sqlList is an SQL list of string literals.
func sqlList(ss []string) string {
	quoted := make([]string, len(ss))
	for i, s := range ss {
		quoted[i] = sqlString(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// querySQL prepares query, refuses it unless it only reads, runs it and
// writes the result to w.
func querySQL(ctx context.Context, c *duckdb.Conn, query string, w resultWriter) error {
	stmt, err := prepareReadOnly(c, query)
	if err != nil {
		return err
	}
	defer stmt.Close()
	dr, err := stmt.QueryContext(ctx, nil)
	if err != nil {
		return sqlError(err)
	}
	defer dr.Close()
	names := dr.Columns()
	cols := make([]resultColumn, len(names))
	typed, _ := dr.(driver.RowsColumnTypeDatabaseTypeName)
	for i, n := range names {
		cols[i].name = n
		tn := ""
		if typed != nil {
			tn = typed.ColumnTypeDatabaseTypeName(i)
		}
		cols[i].typ = parseSQLType(tn)
		if bad := cols[i].typ.unsupported(); bad != "" {
			return &exitError{code: 1, err: fmt.Errorf("query failed: column %q is %s, which convsync sql cannot read: cast it to VARCHAR in the query", n, bad)}
		}
	}
	if err := w.header(cols); err != nil {
		return err
	}
	dest := make([]driver.Value, len(cols))
	for {
		err := dr.Next(dest)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return sqlError(err)
		}
		if err := w.row(dest); err != nil {
			return err
		}
	}
	return w.end()
}

// readStatements are the statement types convsync sql runs. The DuckDB file
// is opened read-only besides, but COPY ... TO, EXPORT DATABASE, ATTACH or
// INSTALL would still write files, and the Parquet datasets have no
// read-only mode of their own.
var readStatements = map[duckdb.StmtType]bool{
	duckdb.STATEMENT_TYPE_SELECT:  true, // SELECT, WITH, VALUES, FROM ..., SHOW, DESCRIBE, SUMMARIZE, most PRAGMAs
	duckdb.STATEMENT_TYPE_EXPLAIN: true, // EXPLAIN ANALYZE runs its statement: checked below
	duckdb.STATEMENT_TYPE_CALL:    true, // CALL pragma_version()
	duckdb.STATEMENT_TYPE_PRAGMA:  true,
}

var stmtTypeNames = map[duckdb.StmtType]string{
	duckdb.STATEMENT_TYPE_INSERT:       "INSERT",
	duckdb.STATEMENT_TYPE_UPDATE:       "UPDATE",
	duckdb.STATEMENT_TYPE_DELETE:       "DELETE",
	duckdb.STATEMENT_TYPE_PREPARE:      "PREPARE",
	duckdb.STATEMENT_TYPE_CREATE:       "CREATE",
	duckdb.STATEMENT_TYPE_EXECUTE:      "EXECUTE",
	duckdb.STATEMENT_TYPE_ALTER:        "ALTER",
	duckdb.STATEMENT_TYPE_TRANSACTION:  "transaction",
	duckdb.STATEMENT_TYPE_COPY:         "COPY",
	duckdb.STATEMENT_TYPE_ANALYZE:      "ANALYZE",
	duckdb.STATEMENT_TYPE_VARIABLE_SET: "SET VARIABLE",
	duckdb.STATEMENT_TYPE_CREATE_FUNC:  "CREATE FUNCTION",
	duckdb.STATEMENT_TYPE_DROP:         "DROP",
	duckdb.STATEMENT_TYPE_EXPORT:       "EXPORT",
	duckdb.STATEMENT_TYPE_VACUUM:       "VACUUM",
	duckdb.STATEMENT_TYPE_SET:          "SET",
	duckdb.STATEMENT_TYPE_LOAD:         "LOAD or INSTALL",
	duckdb.STATEMENT_TYPE_ATTACH:       "ATTACH",
	duckdb.STATEMENT_TYPE_DETACH:       "DETACH",
}

var (
	// explainAnalyze matches EXPLAIN ANALYZE and captures the statement it
	// runs; explainOptions captures the options of EXPLAIN (...).
	explainAnalyze = regexp.MustCompile(`(?is)^EXPLAIN\s+ANALY[SZ]E\b(.*)$`)
	explainOptions = regexp.MustCompile(`(?is)^EXPLAIN\s*\(([^)]*)\)`)
	analyzeWord    = regexp.MustCompile(`(?i)\banaly[sz]e\b`)
)

// stripLeadingComments drops the white space and SQL comments before the
// first keyword of q.
func stripLeadingComments(q string) string {
	for {
		q = strings.TrimLeft(q, " \t\r\n\f")
		switch {
		case strings.HasPrefix(q, "--"):
			i := strings.IndexByte(q, '\n')
			if i < 0 {
				return ""
			}
			q = q[i+1:]
		case strings.HasPrefix(q, "/*"):
			i := strings.Index(q, "*/")
			if i < 0 {
				return ""
			}
			q = q[i+2:]
		default:
			return q
		}
	}
}

// writeKeywords start statements that write, or change the session. They
// are refused before DuckDB prepares them: preparing EXPORT DATABASE, for
// one, already creates its folder.
var writeKeywords = map[string]bool{
	"INSERT": true, "UPDATE": true, "DELETE": true, "MERGE": true, "TRUNCATE": true,
	"CREATE": true, "DROP": true, "ALTER": true, "COMMENT": true,
	"COPY": true, "EXPORT": true, "IMPORT": true, "ATTACH": true, "DETACH": true,
	"INSTALL": true, "LOAD": true, "FORCE": true, "UNINSTALL": true,
	"SET": true, "RESET": true, "USE": true,
	"BEGIN": true, "START": true, "COMMIT": true, "END": true, "ROLLBACK": true, "ABORT": true,
	"CHECKPOINT": true, "VACUUM": true, "ANALYZE": true, "ANALYSE": true,
	"PREPARE": true, "EXECUTE": true, "DEALLOCATE": true,
}

// checkKeywords refuses a query whose first keyword (or, for EXPLAIN, the
// first keyword of the statement explained) starts a statement that writes.
func checkKeywords(query string) error {
	s := stripLeadingComments(query)
	for strings.HasPrefix(s, "(") {
		s = stripLeadingComments(s[1:])
	}
	kw, rest := leadingWord(s)
	switch {
	case kw == "EXPLAIN":
		rest = stripLeadingComments(rest)
		if w, r := leadingWord(rest); w == "ANALYZE" || w == "ANALYSE" {
			rest = r
		} else if strings.HasPrefix(rest, "(") {
			if i := strings.IndexByte(rest, ')'); i >= 0 {
				rest = rest[i+1:]
			}
		}
		return checkKeywords(rest)
	case writeKeywords[kw]:
		return refused(kw)
	}
	return nil
}

// leadingWord splits the keyword (letters and _) off the start of s, in
// upper case.
func leadingWord(s string) (string, string) {
	i := 0
	for i < len(s) && (s[i] == '_' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
		i++
	}
	return strings.ToUpper(s[:i]), s[i:]
}

// refused is the error for a statement convsync sql does not run.
func refused(what string) error {
	return &exitError{code: 1, err: fmt.Errorf("sql only reads: %s statements are refused (the outputs are opened read-only)", what)}
}

// prepareReadOnly prepares query, which must be one statement that only
// reads. Nothing of query has run when it returns.
func prepareReadOnly(c *duckdb.Conn, query string) (*duckdb.Stmt, error) {
	if err := checkKeywords(query); err != nil {
		return nil, err
	}
	// Prepare, unlike PrepareContext, refuses several statements instead
	// of running all but the last.
	ds, err := c.Prepare(query)
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "multi-statement"):
			if kw, _ := leadingWord(stripLeadingComments(query)); kw == "PIVOT" {
				return nil, usageError("PIVOT needs ON ... IN (values) here: without them DuckDB runs it as several statements, and convsync sql runs one")
			}
			return nil, usageError("the QUERY holds several statements; convsync sql runs one")
		case strings.Contains(msg, "empty query"):
			return nil, usageError("the QUERY holds no statement")
		}
		return nil, sqlError(err)
	}
	stmt := ds.(*duckdb.Stmt)
	typ, err := stmt.StatementType()
	if err != nil {
		stmt.Close()
		return nil, sqlError(err)
	}
	if !readStatements[typ] {
		stmt.Close()
		name := stmtTypeNames[typ]
		if name == "" {
			name = "such"
		}
		return nil, refused(name)
	}
	if typ == duckdb.STATEMENT_TYPE_EXPLAIN {
		// EXPLAIN ANALYZE runs its statement: that one must read too.
		s := stripLeadingComments(query)
		if m := explainAnalyze.FindStringSubmatch(s); m != nil {
			inner, err := prepareReadOnly(c, m[1])
			if err != nil {
				stmt.Close()
				return nil, err
			}
			inner.Close()
		} else if m := explainOptions.FindStringSubmatch(s); m != nil && analyzeWord.MatchString(m[1]) {
			stmt.Close()
			return nil, &exitError{code: 1, err: errors.New("sql only reads: write EXPLAIN (ANALYZE ...) as EXPLAIN ANALYZE followed by the statement, which must read")}
		}
	}
	return stmt, nil
}

// sqlError is a failed query: exit 1, with DuckDB's message on one line.
func sqlError(err error) error {
	return &exitError{code: 1, err: fmt.Errorf("query failed: %s", duckDBMessage(err))}
}

// lineMarker starts the caret block DuckDB appends to parser and binder
// errors ("LINE 1: SELECT ...", then a line with "^").
var lineMarker = regexp.MustCompile(`^LINE \d+:`)

// duckDBMessage returns DuckDB's error message without the caret block
// that points into the query, and without a driver prefix, on one line.
func duckDBMessage(err error) string {
	var parts []string
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.TrimSpace(l)
		if lineMarker.MatchString(l) || strings.HasPrefix(l, "Stack Trace") {
			break
		}
		if l == "" || l == context.Canceled.Error() {
			continue
		}
		parts = append(parts, l)
	}
	msg := strings.Join(parts, " ")
	msg = strings.TrimPrefix(msg, "database/sql/driver: ")
	if msg == "" {
		return strings.TrimSpace(err.Error())
	}
	return msg
}
