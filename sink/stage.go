package sink

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/parquet"
	"github.com/apache/arrow/go/v17/parquet/compress"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/convsync/convsync/schemas"
)

// Parquet key-value metadata written into every file besides the stored
// Arrow schema (ARROW:schema, which carries every field's convsync.* tags).
const (
	// KVTable names the table the file belongs to.
	KVTable = "convsync.table"
	// KVRunID is the ID of the run that wrote the file.
	KVRunID = "convsync.run_id"
	// KVSnapshotDate is the snapshot date (YYYY-MM-DD) of the run.
	KVSnapshotDate = "convsync.snapshot_date"
	// KVPII is a JSON object mapping each PII column to its class
	// ("standard" or "sensitive"), for readers that ignore ARROW:schema.
	KVPII = "convsync.pii"
)

// stage streams each table's batches into one Parquet file under a
// staging directory. It is shared by the Parquet and DuckDB sinks.
type stage struct {
	dir   string
	opts  options
	kv    map[string]string // file-level key-value metadata
	order []*tableFile
	files map[string]*tableFile

	// state is held shared by every Write and exclusively by finish and
	// abort, so those wait for writes in flight and none start after.
	state sync.RWMutex
	ended bool
}

// tableFile is the writer state of one table; mu serialises its use. A
// table's rows go to numbered part files in dir: rotate completes the
// current part (a checkpoint), and the next write starts a new one.
type tableFile struct {
	mu    sync.Mutex
	table schemas.Table
	dir   string
	part  int // number of the current (or next) part file
	path  string
	fw    *pqarrow.FileWriter
	rows  int64
	// closedParts and closedRows count the part files completed so far
	// and the rows in them: what a checkpoint can vouch for.
	closedParts int
	closedRows  int64
	out         *syncWriter
	roll        bool  // start a new row group before the next write
	rgBytes     int64 // estimated bytes buffered in the open row group
	err         error // sticky: the file is unusable after a failed write
}

// partName is the file name of a table's n-th part.
func partName(n int) string { return fmt.Sprintf("part-%05d.parquet", n) }

// newStage prepares a stage under dir (which must exist) for tables;
// dirOf gives the folder of each table's part files relative to dir.
func newStage(dir string, tables []schemas.Table, kv map[string]string, opts options, dirOf func(schemas.Table) string) *stage {
	s := &stage{dir: dir, opts: opts, kv: kv, files: make(map[string]*tableFile, len(tables))}
	for _, t := range tables {
		tdir := filepath.Join(dir, dirOf(t))
		tf := &tableFile{table: t, dir: tdir, path: filepath.Join(tdir, partName(0))}
		s.order = append(s.order, tf)
		s.files[t.Name] = tf
	}
	return s
}

// PartState is what a checkpoint records of one table: how many part
// files are complete and the rows in them.
type PartState struct {
	Parts int   `json:"parts"`
	Rows  int64 `json:"rows"`
}

// resumeFrom makes the stage continue an interrupted run's staging: tables
// in prior keep their first prior[t].Parts part files and go on after
// them; every other part file (incomplete, or of a table not kept) is
// removed.
func (s *stage) resumeFrom(prior map[string]PartState) error {
	for _, tf := range s.order {
		keep := prior[tf.table.Name]
		entries, err := os.ReadDir(tf.dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, e := range entries {
			var n int
			if _, err := fmt.Sscanf(e.Name(), "part-%05d.parquet", &n); err == nil && n < keep.Parts && e.Name() == partName(n) {
				continue
			}
			if err := os.RemoveAll(filepath.Join(tf.dir, e.Name())); err != nil {
				return err
			}
		}
		for n := range keep.Parts {
			if _, err := os.Stat(filepath.Join(tf.dir, partName(n))); err != nil {
				return fmt.Errorf("checkpointed part %d of %s: %w", n, tf.table.Name, err)
			}
		}
		tf.part, tf.closedParts = keep.Parts, keep.Parts
		tf.rows, tf.closedRows = keep.Rows, keep.Rows
		tf.path = filepath.Join(tf.dir, partName(tf.part))
	}
	return nil
}

// rotate completes table's current part file, if it has one, so that
// everything written to the table so far is durable; the next write starts
// a new part.
func (s *stage) rotate(table string) error {
	return s.withTable("rotate", table, s.rotateFile)
}

// withTable runs fn on table's file, holding the stage open and the file
// locked; fn is not run after commit or close, or on a file a failed write
// made unusable.
func (s *stage) withTable(op, table string, fn func(*tableFile) error) error {
	s.state.RLock()
	defer s.state.RUnlock()
	if s.ended {
		return fmt.Errorf("%s after commit or close", op)
	}
	tf, ok := s.files[table]
	if !ok {
		return fmt.Errorf("%s: unknown table %q", op, table)
	}
	tf.mu.Lock()
	defer tf.mu.Unlock()
	if tf.err != nil {
		return tf.err
	}
	return fn(tf)
}

// rotateFile completes tf's current part, if any (see rotate).
func (s *stage) rotateFile(tf *tableFile) error {
	if tf.fw == nil {
		return nil
	}
	if err := s.closeFile(tf); err != nil {
		return err
	}
	tf.fw, tf.out, tf.roll, tf.rgBytes = nil, nil, false, 0
	tf.closedParts, tf.closedRows = tf.part+1, tf.rows
	tf.part++
	tf.path = filepath.Join(tf.dir, partName(tf.part))
	return nil
}

// snapshot returns, per table, the completed parts and their rows.
func (s *stage) snapshot() map[string]PartState {
	m := make(map[string]PartState, len(s.order))
	for _, tf := range s.order {
		tf.mu.Lock()
		m[tf.table.Name] = PartState{Parts: tf.closedParts, Rows: tf.closedRows}
		tf.mu.Unlock()
	}
	return m
}

func checkTables(tables []schemas.Table) error {
	if len(tables) == 0 {
		return errors.New("no tables")
	}
	seen := map[string]bool{}
	for _, t := range tables {
		if err := checkName("table", t.Name); err != nil {
			return err
		}
		if t.Schema == nil {
			return fmt.Errorf("table %s has no schema", t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("table %s given twice", t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}

// checkName rejects names that are not safe as a single path element.
func checkName(what, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`+"\x00") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
		return fmt.Errorf("invalid %s name %q", what, name)
	}
	return nil
}

// write appends rec to table's file.
func (s *stage) write(ctx context.Context, table string, rec arrow.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.withTable("write", table, func(tf *tableFile) error { return s.writeFile(tf, rec) })
}

// writeFile appends rec to tf (see write).
func (s *stage) writeFile(tf *tableFile, rec arrow.Record) error {
	table := tf.table.Name
	rec, err := conform(tf.table.Schema, rec)
	if err != nil {
		return fmt.Errorf("write %s: %w", table, err)
	}
	defer rec.Release()
	if rec.NumRows() == 0 {
		return nil
	}
	if err := s.open(tf); err != nil {
		return err
	}
	if tf.roll {
		tf.fw.NewBufferedRowGroup()
		tf.roll, tf.rgBytes = false, 0
	}
	if err := tf.fw.WriteBuffered(rec); err != nil {
		tf.err = fmt.Errorf("write %s: %w", table, err)
		return tf.err
	}
	tf.rows += rec.NumRows()
	// Estimate what the open row group buffers by the Arrow size of the
	// data written into it (an over-estimate of its encoded size).
	size := recordBytes(rec)
	if cur, err := tf.fw.RowGroupNumRows(); err == nil && int64(cur) < rec.NumRows() {
		// WriteBuffered started a new row group at the row limit.
		tf.rgBytes = size * int64(cur) / rec.NumRows()
	} else {
		tf.rgBytes += size
	}
	if tf.rgBytes >= s.opts.rowGroupBytes {
		tf.roll = true
	}
	return nil
}

// conform returns rec (retained) as a record of schema: the caller's
// record may differ from the table's schema in field metadata or
// nullability, never in column names or types.
func conform(schema *arrow.Schema, rec arrow.Record) (arrow.Record, error) {
	if rec.Schema().Equal(schema) {
		rec.Retain()
		return rec, nil
	}
	got := rec.Schema()
	if got.NumFields() != schema.NumFields() {
		return nil, fmt.Errorf("record has %d columns, table has %d", got.NumFields(), schema.NumFields())
	}
	for i, want := range schema.Fields() {
		f := got.Field(i)
		if f.Name != want.Name || !arrow.TypeEqual(f.Type, want.Type) {
			return nil, fmt.Errorf("record column %d is %s %s, table has %s %s", i, f.Name, f.Type, want.Name, want.Type)
		}
	}
	return array.NewRecord(schema, rec.Columns(), rec.NumRows()), nil
}

// recordBytes is the size of the buffers behind rec.
func recordBytes(rec arrow.Record) int64 {
	var n int64
	var add func(d arrow.ArrayData)
	add = func(d arrow.ArrayData) {
		for _, b := range d.Buffers() {
			if b != nil {
				n += int64(b.Len())
			}
		}
		for _, c := range d.Children() {
			add(c)
		}
	}
	for _, c := range rec.Columns() {
		add(c.Data())
	}
	return n
}

// maxStatsSize is the largest min/max statistic kept for a column chunk.
const maxStatsSize = 256

// dictPageBytes caps each column's dictionary.
const dictPageBytes = 256 << 10

// open creates tf's file and Parquet writer if not done yet.
func (s *stage) open(tf *tableFile) error {
	if tf.fw != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(tf.path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(tf.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	props := parquet.NewWriterProperties(
		parquet.WithCompression(compress.Codecs.Zstd),
		// v17 defaults to a REPEATED root, which Snowflake, Impala and
		// others reject.
		parquet.WithRootRepetition(parquet.Repetitions.Required),
		parquet.WithMaxRowGroupLength(s.opts.rowGroupRows),
		// Min/max statistics of long text (attributes) help no reader and,
		// kept for the footer, grow with every row group: cap them.
		parquet.WithMaxStatsSize(maxStatsSize),
		// A column's dictionary is held in memory until its row group is
		// written; past this size the column falls back to plain encoding
		// (SIDs, URLs and attributes are unique anyway).
		parquet.WithDictionaryPageSizeLimit(dictPageBytes),
		parquet.WithAllocator(s.opts.mem),
	)
	arrProps := pqarrow.NewArrowWriterProperties(
		pqarrow.WithStoreSchema(), // keeps the convsync.* field metadata
		pqarrow.WithAllocator(s.opts.mem),
	)
	out := &syncWriter{f: f, w: bufio.NewWriterSize(f, 1<<20)}
	fw, err := pqarrow.NewFileWriter(tf.table.Schema, out, props, arrProps)
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("parquet writer for %s: %w", tf.table.Name, err)
	}
	tf.fw, tf.out = fw, out
	return nil
}

// finish completes every table's file (an empty one, with the schema, for
// a table that got no rows) and returns the rows written per table. The
// stage takes no writes afterwards.
func (s *stage) finish() (map[string]int64, error) {
	s.state.Lock()
	defer s.state.Unlock()
	if s.ended {
		return nil, errors.New("stage already finished")
	}
	s.ended = true
	rows := make(map[string]int64, len(s.order))
	for _, tf := range s.order {
		if err := s.finishTable(tf); err != nil {
			return nil, err
		}
		rows[tf.table.Name] = tf.rows
	}
	return rows, nil
}

func (s *stage) finishTable(tf *tableFile) error {
	tf.mu.Lock()
	defer tf.mu.Unlock()
	if tf.err != nil {
		return tf.err
	}
	if tf.fw == nil && tf.closedParts > 0 {
		return nil // every row is in completed parts
	}
	if err := s.open(tf); err != nil {
		return err
	}
	if err := s.closeFile(tf); err != nil {
		return err
	}
	tf.closedParts, tf.closedRows = tf.part+1, tf.rows
	return nil
}

// closeFile writes the key-value metadata and the footer of tf's open
// part file and closes it (flushed and synced).
func (s *stage) closeFile(tf *tableFile) error {
	kv := map[string]string{KVTable: tf.table.Name}
	for k, v := range s.kv {
		kv[k] = v
	}
	pii := map[string]string{}
	for _, f := range tf.table.Schema.Fields() {
		if c := schemas.Meta(f, schemas.MetaPII); c != "" {
			pii[f.Name] = c
		}
	}
	b, err := json.Marshal(pii)
	if err != nil {
		return err
	}
	kv[KVPII] = string(b)
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		if err := tf.fw.AppendKeyValueMetadata(k, kv[k]); err != nil {
			return err
		}
	}
	if err := tf.fw.Close(); err != nil {
		tf.err = fmt.Errorf("close %s: %w", tf.path, err)
		return tf.err
	}
	tf.fw = nil
	return nil
}

// abort stops the stage, closing any open file without completing it.
// The caller removes the staging directory.
func (s *stage) abort() error {
	s.state.Lock()
	defer s.state.Unlock()
	s.ended = true
	var errs []error
	for _, tf := range s.order {
		tf.mu.Lock()
		if tf.fw != nil {
			// Closing the Parquet writer releases its buffers; what it
			// would still write is discarded.
			tf.out.discard = true
			if err := tf.fw.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, err)
			}
			tf.fw = nil
		}
		tf.mu.Unlock()
	}
	return errors.Join(errs...)
}

// paths returns each table's completed part files, by table name.
func (s *stage) paths() map[string][]string {
	m := make(map[string][]string, len(s.order))
	for _, tf := range s.order {
		for n := range tf.closedParts {
			m[tf.table.Name] = append(m[tf.table.Name], filepath.Join(tf.dir, partName(n)))
		}
	}
	return m
}

// syncWriter buffers writes to f; Close flushes, fsyncs and closes it, so a
// file is complete on disk before it is published. Once discard is set,
// writes are dropped and Close only closes f.
type syncWriter struct {
	f       *os.File
	w       *bufio.Writer
	discard bool
}

func (s *syncWriter) Write(p []byte) (int, error) {
	if s.discard {
		return len(p), nil
	}
	return s.w.Write(p)
}

func (s *syncWriter) Close() error {
	if s.discard {
		return s.f.Close()
	}
	err := s.w.Flush()
	if err == nil {
		err = s.f.Sync()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}
