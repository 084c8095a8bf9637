// Package sinktest generates deterministic rows for the sink packages'
// tests and reads them back through DuckDB.
package sinktest

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	_ "github.com/marcboeker/go-duckdb/v2" // database/sql driver "duckdb"

	"github.com/convsync/convsync/schemas"
)

var base = time.Date(2026, 11, 21, 13, 14, 15, 123456000, time.UTC)

// Value is the test value of column col of row i of a table in
// generation gen: nil (NULL), string, int64, bool or time.Time. Key
// columns are never NULL and sort like i.
func Value(t schemas.Table, gen, i, col int) any {
	f := t.Schema.Field(col)
	key := schemas.Meta(f, schemas.MetaKey) != ""
	if !key && (i+col)%5 == 0 {
		return nil
	}
	switch f.Type.ID() {
	case arrow.STRING:
		switch {
		case key:
			return fmt.Sprintf("K%07d", i)
		case i%97 == 3:
			return strings.Repeat("long ✓ ", 2000) + fmt.Sprint(i)
		case i%3 == 0:
			return fmt.Sprintf("Zoë 日本語 🙂 'quoted' \"dq\" %s %d/%d", f.Name, gen, i)
		default:
			return fmt.Sprintf("%s-%d-%d", f.Name, gen, i)
		}
	case arrow.INT64:
		return int64(i*1000+col) - 5000 + int64(gen)
	case arrow.BOOL:
		return (i+gen)%2 == 0
	case arrow.TIMESTAMP:
		return base.Add(time.Duration(i)*time.Hour + time.Duration(col)*time.Microsecond + time.Duration(gen)*time.Minute)
	}
	panic("unexpected type " + f.Type.String())
}

// Record builds rows [from, to) of tbl in generation gen.
func Record(mem memory.Allocator, tbl schemas.Table, gen, from, to int) arrow.Record {
	b := array.NewRecordBuilder(mem, tbl.Schema)
	defer b.Release()
	for i := from; i < to; i++ {
		for c := range tbl.Schema.NumFields() {
			fb := b.Field(c)
			switch v := Value(tbl, gen, i, c).(type) {
			case nil:
				fb.AppendNull()
			case string:
				fb.(*array.StringBuilder).Append(v)
			case int64:
				fb.(*array.Int64Builder).Append(v)
			case bool:
				fb.(*array.BooleanBuilder).Append(v)
			case time.Time:
				fb.(*array.TimestampBuilder).Append(arrow.Timestamp(v.UnixMicro()))
			}
		}
	}
	return b.NewRecord()
}

// OpenDB opens a DuckDB database ("" for in-memory), closed at cleanup.
func OpenDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Glob is the read_parquet call reading table's dataset under dir.
func Glob(dir, table string) string {
	return fmt.Sprintf("read_parquet('%s', hive_partitioning = true)",
		strings.ReplaceAll(filepath.Join(dir, table, "**", "*.parquet"), "'", "''"))
}

// Generation returns the generation of from's rows (a table or a table
// function, filtered by where), checking that it holds rows 0..n-1 of one
// generation, complete and in order; it reports through t and returns -1
// when the rows are of no single generation.
func Generation(t testing.TB, db *sql.DB, tbl schemas.Table, from, where string) (gen, n int) {
	t.Helper()
	names := make([]string, tbl.Schema.NumFields())
	for i, f := range tbl.Schema.Fields() {
		names[i] = `"` + f.Name + `"`
	}
	rows, err := db.Query(fmt.Sprintf("SELECT %s FROM %s %s ORDER BY %q", strings.Join(names, ", "), from, where, tbl.Key()[0]))
	if err != nil {
		t.Fatalf("read %s: %v", from, err)
	}
	defer rows.Close()
	match := func(vals []any, g, i int) bool {
		for c, v := range vals {
			if ts, ok := v.(time.Time); ok {
				v = ts.UTC()
			}
			if !reflect.DeepEqual(v, Value(tbl, g, i, c)) {
				return false
			}
		}
		return true
	}
	gen = -1
	for ; rows.Next(); n++ {
		vals := make([]any, len(names))
		ptrs := make([]any, len(names))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		if gen < 0 {
			for g := 0; g < 100 && gen < 0; g++ {
				if match(vals, g, n) {
					gen = g
				}
			}
			if gen < 0 {
				t.Errorf("%s row %d is of no generation", from, n)
				return -1, n
			}
		} else if !match(vals, gen, n) {
			t.Errorf("%s row %d is not of generation %d like the rows before it", from, n, gen)
			return -1, n
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return gen, n
}

// Check verifies that from holds exactly rows 0..n-1 of generation gen.
func Check(t testing.TB, db *sql.DB, tbl schemas.Table, from string, gen, n int) {
	t.Helper()
	g, got := Generation(t, db, tbl, from, "")
	if got != n || (n > 0 && g != gen) {
		t.Errorf("%s: %d rows of generation %d, want %d of generation %d", from, got, g, n, gen)
	}
}
