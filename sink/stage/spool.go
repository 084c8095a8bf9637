package stage

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/ipc"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// Segment is one spool file of a table: an Arrow IPC stream, and how much
// of it a checkpoint vouches for.
type Segment struct {
	N     int   `json:"n"`
	Bytes int64 `json:"bytes"`
	Rows  int64 `json:"rows"`
}

// spool appends a table's batches to Arrow IPC stream segments
// (spool/<table>.<n>.arrows), one per attempt of the run. It is what a
// checkpoint makes durable: sync flushes and fsyncs the open segment and
// reports its length, and a stream cut at such a length reads back as
// every batch written before it. The Parquet file being published is
// written beside it and never needs to be durable before the run ends.
type spool struct {
	dir    string
	table  string
	schema *arrow.Schema
	mem    memory.Allocator
	seg    Segment // the open (or next) segment
	f      *os.File
	buf    *bufio.Writer
	w      *ipc.Writer
}

func segmentPath(dir, table string, n int) string {
	return filepath.Join(dir, fmt.Sprintf("%s.%d.arrows", table, n))
}

// write appends rec to the open segment, creating it first if needed.
func (s *spool) write(rec arrow.Record) error {
	if s.w == nil {
		f, err := os.OpenFile(segmentPath(s.dir, s.table, s.seg.N), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		s.f, s.buf = f, bufio.NewWriterSize(f, 256<<10)
		s.w = ipc.NewWriter(counter{s}, ipc.WithSchema(s.schema), ipc.WithAllocator(s.mem))
	}
	if err := s.w.Write(rec); err != nil {
		return err
	}
	s.seg.Rows += rec.NumRows()
	return nil
}

// counter counts the bytes of the open segment.
type counter struct{ s *spool }

func (c counter) Write(b []byte) (int, error) {
	n, err := c.s.buf.Write(b)
	c.s.seg.Bytes += int64(n)
	return n, err
}

// sync makes everything written durable and returns the open segment's
// state (nothing when no batch was written this attempt).
func (s *spool) sync() (Segment, bool, error) {
	if s.w == nil {
		return Segment{}, false, nil
	}
	if err := s.buf.Flush(); err != nil {
		return Segment{}, false, err
	}
	if err := s.f.Sync(); err != nil {
		return Segment{}, false, err
	}
	return s.seg, true, nil
}

// close closes the open segment, if any; what was not synced may be lost.
func (s *spool) close() error {
	if s.w == nil {
		return nil
	}
	s.buf.Reset(discard{})
	err := s.f.Close()
	s.w, s.f = nil, nil
	return err
}

// replay reads the segments back, in order, as far as each is vouched
// for, and hands every batch to fn (which must not keep it).
func replay(dir, table string, segs []Segment, mem memory.Allocator, fn func(arrow.Record) error) error {
	for _, seg := range segs {
		if err := replaySegment(segmentPath(dir, table, seg.N), seg, mem, fn); err != nil {
			return fmt.Errorf("spool of %s, segment %d: %w", table, seg.N, err)
		}
	}
	return nil
}

func replaySegment(path string, seg Segment, mem memory.Allocator, fn func(arrow.Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < seg.Bytes {
		return fmt.Errorf("%d bytes on disk, the checkpoint vouches for %d", st.Size(), seg.Bytes)
	}
	r, err := ipc.NewReader(bufio.NewReaderSize(io.LimitReader(f, seg.Bytes), 256<<10), ipc.WithAllocator(mem))
	if err != nil {
		return err
	}
	defer r.Release()
	var rows int64
	for r.Next() {
		rec := r.Record()
		rows += rec.NumRows()
		if err := fn(rec); err != nil {
			return err
		}
	}
	if err := r.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if rows != seg.Rows {
		return fmt.Errorf("%d rows read back, the checkpoint vouches for %d", rows, seg.Rows)
	}
	return nil
}
