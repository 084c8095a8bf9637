// Package jobs orchestrates convsync's runs: it walks the API through a
// Source with bounded worker pools, turns objects into Arrow batches with
// package transform, and streams them into a Sink, which publishes them only
// when the whole run has succeeded.
package jobs

import (
	"context"
	"fmt"
	"hash/maphash"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/transform"
)

// Object is one API resource as decoded JSON.
type Object = map[string]any

// Sink receives a run's record batches; nothing is visible before Commit,
// and Close without Commit discards them. Rotate and Checkpoint make what
// was written durable for a resume; Suspend ends a failed run keeping it.
type Sink interface {
	Write(ctx context.Context, table string, rec arrow.Record) error
	Commit(ctx context.Context, run sink.Run) error
	Close() error
	Rotate(ctx context.Context, table string) error
	Checkpoint(ctx context.Context, state []byte, done []string) error
	Suspend() error
}

// Default sizes of the pipeline.
const (
	DefaultBatchRows = 16384   // rows per Arrow record handed to the sink, at most
	batchBytes       = 4 << 20 // and about this many bytes of values, at most
	queueRows        = 256     // rows buffered between the fetchers and a table's writer
)

// row is one object on its way to a table writer, or, with mark set, a
// checkpoint marker: the writer flushes, completes its part file and
// reports on mark.
type row struct {
	obj  Object
	rc   transform.Context
	mark chan<- error
}

// tableWriter owns one table: it appends rows to a Builder and hands full
// batches to the sink. Its queue is bounded, so a slow sink slows the
// fetchers down instead of filling memory.
type tableWriter struct {
	table  schemas.Table
	q      chan row
	rows   atomic.Int64
	dupes  atomic.Int64
	keyOf  func(Object) string
	policy transform.Policy
	runID  string
}

func newTableWriter(t schemas.Table, policy transform.Policy, runID string) *tableWriter {
	return &tableWriter{
		runID:  runID,
		table:  t,
		q:      make(chan row, queueRows),
		keyOf:  keyFunc(t),
		policy: policy,
	}
}

// keyFunc returns a function giving an object's key in table t, from the
// key columns' source fields.
func keyFunc(t schemas.Table) func(Object) string {
	srcs := make([]string, len(t.Key))
	for i, k := range t.Key {
		f, _ := t.Schema.FieldsByName(k)
		srcs[i] = schemas.Meta(f[0], schemas.MetaSource)
	}
	return func(o Object) string {
		var b strings.Builder
		for _, s := range srcs {
			v, _ := o[s].(string)
			b.WriteString(v)
			b.WriteByte(0)
		}
		return b.String()
	}
}

// unique passes on the objects of one list walk, dropping any whose key
// was seen earlier in the same walk (Twilio's cursors can repeat a row when
// data changes during the walk). Keys are unique within a walk's parent, so
// the set lives only as long as the walk and holds 64-bit hashes of keys:
// memory follows the longest list, not the account.
func (w *tableWriter) unique(seq iter.Seq2[Object, error]) iter.Seq2[Object, error] {
	return func(yield func(Object, error) bool) {
		seed := maphash.MakeSeed()
		seen := map[uint64]struct{}{}
		for o, err := range seq {
			if err == nil {
				h := maphash.String(seed, w.keyOf(o))
				if _, dup := seen[h]; dup {
					w.dupes.Add(1)
					continue
				}
				seen[h] = struct{}{}
			}
			if !yield(o, err) {
				return
			}
		}
	}
}

// send queues r for the writer, giving up when ctx is done.
func (w *tableWriter) send(ctx context.Context, r row) error {
	select {
	case w.q <- r:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// run drains the queue until it is closed, writing batches of batchRows.
func (w *tableWriter) run(ctx context.Context, snk Sink, mem memory.Allocator, batchRows int) error {
	b := transform.NewBuilder(mem, w.table, w.policy)
	defer b.Release()
	flush := func() error {
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
		case r, ok := <-w.q:
			if !ok {
				if b.Len() > 0 {
					return flush()
				}
				return nil
			}
			if r.mark != nil {
				err := error(nil)
				if b.Len() > 0 {
					err = flush()
				}
				if err == nil {
					err = snk.Rotate(ctx, w.table.Name)
				}
				r.mark <- err
				if err != nil {
					return err
				}
				continue
			}
			r.rc.RunID = w.runID
			if err := b.Append(r.obj, r.rc); err != nil {
				return err
			}
			w.rows.Add(1)
			if b.Len() >= batchRows || b.Bytes() >= batchBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
}

// writers is the set of table writers of one run.
type writers struct {
	byName map[string]*tableWriter
	order  []*tableWriter
	once   sync.Once
}

func newWriters(tables []schemas.Table, policy transform.Policy, runID string) *writers {
	ws := &writers{byName: map[string]*tableWriter{}}
	for _, t := range tables {
		w := newTableWriter(t, policy, runID)
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

// counts returns rows written so far per table.
func (ws *writers) counts() map[string]int64 {
	m := make(map[string]int64, len(ws.order))
	for _, w := range ws.order {
		m[w.table.Name] = w.rows.Load()
	}
	return m
}

// collect gathers a whole child list (one conversation's participants, one
// user's conversations) before any of it is queued, so a parent that
// vanishes halfway through its list contributes no child rows at all.
// Child lists are bounded by Twilio (1,000 participants a conversation).
func collect(seq iter.Seq2[Object, error]) ([]Object, error) {
	var out []Object
	for o, err := range seq {
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// sidOf returns the object's "sid" field, or an error naming what is missing.
func sidOf(o Object, what string) (string, error) {
	s, _ := o["sid"].(string)
	if s == "" {
		return "", fmt.Errorf("%s without a sid", what)
	}
	return s, nil
}

// logger returns l, or a disabled logger for the zero value.
func logger(l *zerolog.Logger) zerolog.Logger {
	if l == nil {
		return zerolog.Nop()
	}
	return *l
}

// eachService calls fn for every service the account lists, or only for
// those in only; a service in only that the account does not have is an
// error, reported after the list was read.
func eachService(ctx context.Context, list func(context.Context) iter.Seq2[Object, error], only []string, fn func(Object, string) error) error {
	want := map[string]bool{}
	for _, s := range only {
		want[s] = false
	}
	for obj, err := range list(ctx) {
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		sid, err := sidOf(obj, "service")
		if err != nil {
			return err
		}
		if _, ok := want[sid]; len(only) > 0 && !ok {
			continue
		}
		want[sid] = true
		if err := fn(obj, sid); err != nil {
			return err
		}
	}
	var missing []string
	for s, found := range want {
		if !found {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("--services: the account has no service %s", strings.Join(missing, ", "))
	}
	return nil
}

// skips records the parents (services, users, conversations) found deleted
// while the run walked them.
type skips struct {
	mu   sync.Mutex
	sids []string
}

func (s *skips) add(sid string) {
	s.mu.Lock()
	s.sids = append(s.sids, sid)
	s.mu.Unlock()
}

func (s *skips) count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.sids))
}

func (s *skips) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sids)
}

// publish ends a run that err did not stop by committing it to snk and
// reporting the final progress; a run that failed, or whose commit failed,
// is marked so and nothing is published.
func publish(ctx context.Context, snk Sink, run *sink.Run, err error, report func(Progress), st extract.Stats) error {
	if err == nil {
		if err = snk.Commit(ctx, *run); err != nil {
			err = fmt.Errorf("commit: %w", err)
		}
	}
	if err != nil {
		run.Status = "failed"
		return err
	}
	if report != nil {
		report(Progress{Elapsed: run.Ended.Sub(run.Started), Rows: run.Rows, Stats: st, ParentsSkipped: run.ParentsSkipped, Done: true})
	}
	return nil
}
