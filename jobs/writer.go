package jobs

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/transform"
)

// queueItems is how many items (a page or a child list each) wait
// between the fetchers and a table's writer.
const queueItems = 16

// item is one unit on its way to a table writer: objects of a page or of
// a whole child list, and the pages to release once they are appended;
// or, with mark set, a checkpoint marker: the writer hands what it holds
// to the sink and reports on mark.
type item struct {
	objs  []extract.Object
	pages []*extract.Page
	rc    transform.Context
	mark  chan<- error
}

func (it item) release() {
	for _, p := range it.pages {
		p.Release()
	}
}

// tableWriter owns one table: it appends rows to a Builder and hands full
// batches to the sink. Its queue is bounded, so a slow sink slows the
// fetchers down instead of filling memory.
type tableWriter struct {
	table  schemas.Table
	q      chan item
	rows   atomic.Int64
	bytes  atomic.Int64 // of the batches handed to the sink
	policy transform.Policy
	runID  string
	log    zerolog.Logger

	mu      sync.Mutex
	unknown map[string]int64 // fields the table does not have, with counts
}

func newTableWriter(t schemas.Table, policy transform.Policy, runID string, log zerolog.Logger) *tableWriter {
	return &tableWriter{table: t, q: make(chan item, queueItems), policy: policy, runID: runID,
		log: log.With().Str("table", t.Name).Logger(), unknown: map[string]int64{}}
}

// send queues it for the writer, giving up when ctx is done.
func (w *tableWriter) send(ctx context.Context, it item) error {
	select {
	case w.q <- it:
		return nil
	case <-ctx.Done():
		it.release()
		return context.Cause(ctx)
	}
}

// run drains the queue until it is closed, writing batches of batchRows.
func (w *tableWriter) run(ctx context.Context, snk Sink, mem memory.Allocator, batchRows int) (err error) {
	b := transform.NewBuilder(mem, w.table, w.policy)
	defer b.Release()
	defer func() {
		if err != nil {
			// Nothing more is appended: give back the memory of what waits.
			for {
				select {
				case it, ok := <-w.q:
					if !ok {
						return
					}
					it.release()
					if it.mark != nil {
						it.mark <- err
					}
				default:
					return
				}
			}
		}
	}()
	flush := func() error {
		w.noteUnknown(b.UnknownFields())
		if b.Len() == 0 {
			return nil
		}
		w.bytes.Add(int64(b.Bytes()))
		rec := b.NewRecord()
		defer rec.Release()
		if err := snk.Write(ctx, w.table.Name, rec); err != nil {
			return fmt.Errorf("write %s: %w", w.table.Name, err)
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case it, ok := <-w.q:
			if !ok {
				return flush()
			}
			if it.mark != nil {
				err := flush()
				it.mark <- err
				if err != nil {
					return err
				}
				continue
			}
			it.rc.RunID = w.runID
			for _, o := range it.objs {
				if err := b.Append(o, it.rc); err != nil {
					it.release()
					return err
				}
			}
			w.rows.Add(int64(len(it.objs)))
			it.release()
			if b.Len() >= batchRows || b.Bytes() >= batchBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
}

// noteUnknown records the builder's unknown-field counts and warns once
// for each field seen the first time.
func (w *tableWriter) noteUnknown(counts map[string]int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for f, n := range counts {
		if _, seen := w.unknown[f]; !seen {
			w.log.Warn().Str("field", f).Msg("the API sent a field the table does not have; it is left out of the rows")
		}
		w.unknown[f] = n
	}
}

// unknownFields returns the counts recorded so far.
func (w *tableWriter) unknownFields() map[string]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.unknown)
}

// writers is the set of table writers of one run.
type writers struct {
	byName map[string]*tableWriter
	order  []*tableWriter
	once   sync.Once
}

func newWriters(tables []schemas.Table, policy transform.Policy, runID string, log zerolog.Logger) *writers {
	ws := &writers{byName: map[string]*tableWriter{}}
	for _, t := range tables {
		w := newTableWriter(t, policy, runID, log)
		ws.byName[t.Name] = w
		ws.order = append(ws.order, w)
	}
	return ws
}

// closeAll closes every queue, once, when the producers are done.
func (ws *writers) closeAll() {
	ws.once.Do(func() {
		for _, w := range ws.order {
			close(w.q)
		}
	})
}

// written returns the bytes of the batches handed to the sink so far.
func (ws *writers) written() int64 {
	var n int64
	for _, w := range ws.order {
		n += w.bytes.Load()
	}
	return n
}

// counts returns rows appended so far per table.
func (ws *writers) counts() map[string]int64 {
	m := make(map[string]int64, len(ws.order))
	for _, w := range ws.order {
		m[w.table.Name] = w.rows.Load()
	}
	return m
}

// unknownFields returns the unknown-field counts per table (only tables
// that saw some), added to prior.
func (ws *writers) unknownFields(prior map[string]map[string]int64) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for t, m := range prior {
		out[t] = maps.Clone(m)
	}
	for _, w := range ws.order {
		for f, n := range w.unknownFields() {
			if out[w.table.Name] == nil {
				out[w.table.Name] = map[string]int64{}
			}
			out[w.table.Name][f] += n
		}
	}
	return out
}
