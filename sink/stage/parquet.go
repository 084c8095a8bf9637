package stage

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
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

// Defaults for the Parquet files a stage writes.
const (
	// DefaultRowGroupRows is the most rows a Parquet row group holds.
	DefaultRowGroupRows = 128 * 1024
	// DefaultRowGroupBytes bounds the data a row group buffers in memory
	// before it is flushed, measured as the Arrow size of the batches
	// written into it, so wide rows with large strings cannot make a row
	// group grow without bound.
	DefaultRowGroupBytes = 8 << 20
	// maxStatsSize is the largest min/max statistic kept for a column chunk.
	maxStatsSize = 256
	// dictPageBytes caps each column's dictionary.
	dictPageBytes = 256 << 10
)

// parquetFile streams one table's batches into one Parquet file: zstd, a
// REQUIRED root (which Snowflake, Impala and others need), the Arrow schema
// stored so field metadata survives, row groups cut by rows and by bytes.
type parquetFile struct {
	path    string
	table   schemas.Table
	kv      map[string]string
	f       *os.File
	buf     *bufio.Writer
	fw      *pqarrow.FileWriter
	opts    Options
	roll    bool  // start a new row group before the next write
	rgBytes int64 // estimated bytes buffered in the open row group
}

func createParquet(path string, t schemas.Table, kv map[string]string, o Options) (*parquetFile, error) {
	if err := registerZstd(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	opts := []parquet.WriterProperty{
		parquet.WithCompression(compress.Codecs.Zstd),
		// v17 defaults to a REPEATED root, which Snowflake, Impala and
		// others reject.
		parquet.WithRootRepetition(parquet.Repetitions.Required),
		parquet.WithMaxRowGroupLength(o.RowGroupRows),
		// Min/max statistics of long text (attributes) help no reader and,
		// kept for the footer, grow with every row group: cap them.
		parquet.WithMaxStatsSize(maxStatsSize),
		// A column's dictionary is held in memory until its row group is
		// written; past this size the column falls back to plain encoding
		// (SIDs, URLs and attributes are unique anyway).
		parquet.WithDictionaryPageSizeLimit(dictPageBytes),
		parquet.WithAllocator(o.Allocator),
	}
	// Dictionaries pay for repeated text (SIDs of parents, enums, roles);
	// timestamps and counters are near-unique or tiny, and a dictionary's
	// hash table costs memory for every open row group.
	for _, f := range t.Schema.Fields() {
		if !isText(f.Type) {
			opts = append(opts, parquet.WithDictionaryFor(f.Name, false))
		}
	}
	props := parquet.NewWriterProperties(opts...)
	arrProps := pqarrow.NewArrowWriterProperties(
		pqarrow.WithStoreSchema(), // keeps the convsync.* field metadata
		pqarrow.WithAllocator(o.Allocator),
	)
	p := &parquetFile{path: path, table: t, kv: kv, f: f, buf: bufio.NewWriterSize(f, 256<<10), opts: o}
	fw, err := pqarrow.NewFileWriter(t.Schema, p, props, arrProps)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("parquet writer for %s: %w", t.Name, err)
	}
	p.fw = fw
	return p, nil
}

// Write implements io.Writer for the Parquet writer.
func (p *parquetFile) Write(b []byte) (int, error) { return p.buf.Write(b) }

// Close implements io.Closer for the Parquet writer; the file itself is
// closed by finish or abort.
func (p *parquetFile) Close() error { return nil }

// write appends rec (of the table's schema) to the file.
func (p *parquetFile) write(rec arrow.Record) error {
	if rec.NumRows() == 0 {
		return nil
	}
	if p.roll {
		p.fw.NewBufferedRowGroup()
		p.roll, p.rgBytes = false, 0
	}
	if err := p.fw.WriteBuffered(rec); err != nil {
		return err
	}
	// Estimate what the open row group buffers by the Arrow size of the
	// data written into it (an over-estimate of its encoded size).
	size := recordBytes(rec)
	if cur, err := p.fw.RowGroupNumRows(); err == nil && int64(cur) < rec.NumRows() {
		// WriteBuffered started a new row group at the row limit.
		p.rgBytes = size * int64(cur) / rec.NumRows()
	} else {
		p.rgBytes += size
	}
	if p.rgBytes >= p.opts.RowGroupBytes {
		p.roll = true
	}
	return nil
}

// finish writes the key-value metadata and the footer, and flushes and
// syncs the file, so that it is complete on disk before it is published.
func (p *parquetFile) finish() error {
	kv := map[string]string{KVTable: p.table.Name}
	maps.Copy(kv, p.kv)
	pii := map[string]string{}
	for _, f := range p.table.Schema.Fields() {
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
		if err := p.fw.AppendKeyValueMetadata(k, kv[k]); err != nil {
			return err
		}
	}
	err = p.fw.Close()
	if err == nil {
		err = p.buf.Flush()
	}
	if err == nil {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("complete %s: %w", p.path, err)
	}
	return nil
}

// abort releases the writer's buffers without completing the file.
func (p *parquetFile) abort() {
	p.buf.Reset(discard{})
	_ = p.fw.Close()
	_ = p.f.Close()
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

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

// defaultAllocator is used when Options.Allocator is nil.
var defaultAllocator memory.Allocator = memory.DefaultAllocator

// isText reports whether values of type dt are strings, which Parquet
// dictionary-encodes.
func isText(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.BINARY, arrow.LARGE_BINARY:
		return true
	}
	return false
}
