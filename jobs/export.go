package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/runs"
	"github.com/convsync/convsync/transform"
)

// childQueue is how many parents wait per kind for their child lists to
// be fetched. It is large so that the long list walks, which feed it, are
// not held up by the child lists (a parent costs about a hundred bytes).
const childQueue = 16384

// export is one export run in flight.
type export struct {
	src     Source
	snk     Sink
	cfg     Config
	log     zerolog.Logger
	ws      *writers
	cps     *checkpoints
	skipped skips
	started time.Time
	prior   state
	dupes   atomic.Int64

	mu     sync.Mutex
	walked []string // services walked, in listing order
}

// Export walks every service of the account (or cfg.Services) and writes
// the five export tables to snk, publishing only when every list was read
// completely. On error nothing is published; with checkpoints on, what the
// run had made durable stays in the sink's staging for a resume.
func Export(ctx context.Context, src Source, snk Sink, cfg Config) (Summary, error) {
	cfg.defaults()
	e := &export{src: src, snk: snk, cfg: cfg, log: cfg.Logger, started: time.Now().UTC(), cps: newCheckpoints(cfg.Resume)}
	if r := cfg.Resume; r != nil {
		e.prior = r.st
		e.started = r.st.Started
		e.log.Info().Int("parents_finished", r.Finished()).Int("parents_pending", r.Pending()).Bool("crawl_finished", r.crawled).
			Int("checkpoints", r.st.Checkpoints).Msg("resuming the interrupted run: fetching only what it had not made durable")
	}
	e.ws = newWriters(schemas.Export, cfg.Policy, cfg.RunID, e.log)
	var err error
	if cfg.Resume == nil || !cfg.Resume.crawled {
		err = e.crawl(ctx)
	}
	sum := Summary{Skipped: e.skipped.list()}
	sum.Run = e.record("export")
	if err != nil {
		sum.Run.Status = runs.Failed
		return sum, err
	}
	st := e.state()
	st.Checkpoints = e.cps.taken
	b, jerr := json.Marshal(st)
	if jerr != nil {
		return sum, jerr
	}
	e.cps.mu.Lock()
	lines := e.cps.pending
	e.cps.pending = nil
	e.cps.mu.Unlock()
	run, err := snk.Publish(ctx, sum.Run, b, lines)
	sum.Run = run
	if err != nil {
		sum.Run.Status = runs.Failed
		return sum, err
	}
	e.report(true, run.Rows)
	return sum, nil
}

// crawl fetches everything, streaming it into the sink.
func (e *export) crawl(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, w := range e.ws.order {
		g.Go(func() error { return w.run(gctx, e.snk, e.cfg.Allocator, e.cfg.BatchRows) })
	}
	stopProgress := startProgress(gctx, e.cfg.Progress, func() Progress { return e.progress(false, nil) })
	defer stopProgress()

	prod, pctx := errgroup.WithContext(gctx)
	users := newParentQueue()
	convs := newParentQueue()
	// Every producer of a queue adds itself before any of them can finish,
	// so that a queue is closed only after the last one is done.
	users.add(2)
	convs.add(2)
	prod.Go(func() error {
		defer users.done()
		defer convs.done()
		return e.walkServices(pctx, prod, users, convs)
	})
	// The parents an interrupted attempt had listed but not finished.
	for _, q := range []struct {
		q    *parentQueue
		kind string
	}{{users, kindUser}, {convs, kindConversation}} {
		prod.Go(func() error {
			defer q.q.done()
			if e.cfg.Resume == nil {
				return nil
			}
			for _, p := range e.cfg.Resume.pending {
				if p.kind != q.kind {
					continue
				}
				if err := q.q.send(pctx, p); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for range e.cfg.Workers {
		prod.Go(func() error {
			return e.children(pctx, users.ch, kindUser, e.src.UserConversations, e.ws.byName[schemas.UserConversations.Name])
		})
		prod.Go(func() error {
			return e.children(pctx, convs.ch, kindConversation, e.src.Participants, e.ws.byName[schemas.Participants.Name])
		})
	}
	// The checkpoints stop before the writers' queues close: a checkpoint
	// under way sends its markers down those queues.
	stopCP, cpDone := make(chan struct{}), make(chan struct{})
	if s := e.cfg.Checkpoints; s != nil {
		g.Go(func() error {
			defer close(cpDone)
			return s.run(gctx, stopCP, e.started, e.ws.written, func() error { return e.checkpoint(gctx) })
		})
	} else {
		close(cpDone)
	}
	g.Go(func() error {
		err := prod.Wait()
		close(stopCP)
		<-cpDone
		if err == nil {
			e.ws.closeAll()
		}
		return err
	})
	return g.Wait()
}

// checkpoint takes one checkpoint (see Schedule).
func (e *export) checkpoint(ctx context.Context) error {
	start := time.Now()
	e.cps.hold.Lock()
	defer e.cps.hold.Unlock()
	b, lines, err := e.cps.take(ctx, e.ws, e.state())
	if err != nil {
		return err
	}
	if err := e.snk.Checkpoint(ctx, b, lines); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	e.log.Debug().Int("checkpoint", e.cps.taken).Int("log_lines", len(lines)).Dur("elapsed", time.Since(e.started)).
		Dur("took", time.Since(start)).Msg("checkpoint taken")
	return nil
}

// state is the job's state now, for a checkpoint.
func (e *export) state() state {
	st := e.src.Stats()
	rows := e.ws.counts()
	for t, n := range e.prior.Rows {
		rows[t] += n
	}
	return state{
		Fingerprint: e.cfg.Fingerprint, Started: e.started,
		Requests: e.prior.Requests + st.Requests, Retries: e.prior.Retries + st.Retries,
		Throttled: e.prior.Throttled + st.Throttled, Skipped: e.prior.Skipped + e.skipped.count(),
		Duplicates: e.prior.Duplicates + e.dupes.Load(),
		Rows:       rows, Unknown: e.ws.unknownFields(e.prior.Unknown),
	}
}

// record is the run's record so far.
func (e *export) record(command string) runs.Record {
	st := e.state()
	stats := e.src.Stats()
	e.mu.Lock()
	walked := slices.Clone(e.walked)
	e.mu.Unlock()
	return runs.Record{
		RunID: e.cfg.RunID, Command: command, Version: e.cfg.Version, SnapshotDate: runs.Date(e.cfg.SnapshotDate),
		StartedAt: e.started, EndedAt: time.Now().UTC(), Status: runs.Succeeded, PII: e.cfg.Policy.Mode,
		Rows: st.Rows, Requests: st.Requests, Retries: st.Retries, Throttled: st.Throttled, Duplicates: st.Duplicates,
		ParentsSkipped: st.Skipped, Services: walked, UnknownFields: st.Unknown,
		ConcurrencyLimit: stats.Limit, ConcurrencyPeak: stats.PeakInFlight,
	}
}

func (e *export) progress(done bool, rows map[string]int64) Progress {
	st := e.state()
	if rows == nil {
		rows = st.Rows
	}
	stats := e.src.Stats()
	stats.Requests, stats.Retries, stats.Throttled = st.Requests, st.Retries, st.Throttled
	return Progress{Elapsed: time.Since(e.started), Rows: rows, Stats: stats, ParentsSkipped: st.Skipped, Done: done}
}

func (e *export) report(done bool, rows map[string]int64) {
	if e.cfg.Progress != nil {
		e.cfg.Progress(e.progress(done, rows))
	}
}

// walkServices lists the account's services (or cfg.Services), queues
// their rows and starts the walk of each one's user and conversation
// lists. A service in cfg.Services the account does not have is an error.
func (e *export) walkServices(ctx context.Context, g *errgroup.Group, users, convs *parentQueue) error {
	w := e.ws.byName[schemas.Services.Name]
	only := newServiceFilter(e.cfg.Services)
	d := newDedup(newKeyer(schemas.Services), true, nil)
	for pg, err := range e.src.Services(ctx) {
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		objs, err := d.page(pg.Items)
		if err != nil {
			pg.Release()
			return fmt.Errorf("list services: %w", err)
		}
		var keep []extract.Object
		var sids []string
		for _, o := range objs {
			if sid := sidOf(o); only.keep(sid) {
				keep = append(keep, o)
				sids = append(sids, sid)
			}
		}
		e.dupes.Add(int64(len(pg.Items) - len(objs)))
		for i, o := range keep {
			if err := w.send(ctx, item{objs: []extract.Object{o}, rc: transform.Context{ServiceSID: sids[i]}}); err != nil {
				pg.Release()
				return err
			}
		}
		// The writer appends each service row with its own context; the
		// page is released once the last of them is appended.
		if err := w.send(ctx, item{pages: []*extract.Page{pg.Page}}); err != nil {
			return err
		}
		for _, sid := range sids {
			e.mu.Lock()
			e.walked = append(e.walked, sid)
			e.mu.Unlock()
			users.add(1)
			convs.add(1)
			g.Go(func() error {
				defer users.done()
				return e.walkParents(ctx, sid, kindUser, e.src.Users, schemas.Users, users)
			})
			g.Go(func() error {
				defer convs.done()
				return e.walkParents(ctx, sid, kindConversation, e.src.Conversations, schemas.Conversations, convs)
			})
		}
	}
	return only.check()
}

// serviceFilter keeps the services a run asked for (all when none), and
// knows which of those the account did not list.
type serviceFilter map[string]bool

func newServiceFilter(only []string) serviceFilter {
	f := serviceFilter{}
	for _, s := range only {
		f[s] = false
	}
	return f
}

// keep reports whether the service is to be walked, noting it as found.
func (f serviceFilter) keep(sid string) bool {
	if len(f) == 0 {
		return true
	}
	if _, ok := f[sid]; !ok {
		return false
	}
	f[sid] = true
	return true
}

// check fails when a service asked for was not listed.
func (f serviceFilter) check() error {
	var missing []string
	for s, found := range f {
		if !found {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("the account has no service %s", strings.Join(missing, ", "))
	}
	return nil
}

// walkParents walks one service's user or conversation list from where a
// resumed run left it, queues the rows page by page and sends each parent
// on for its child list. A service deleted during the run (a 404 on the
// list) keeps its row and is counted as skipped.
func (e *export) walkParents(ctx context.Context, svc, kind string,
	list func(context.Context, string, string) iter.Seq2[extract.PageOf, error], t schemas.Table, out *parentQueue) error {
	key := walkKey(kind, svc)
	ws := e.cps.walk(key)
	if ws.Done {
		return nil
	}
	what := t.Name
	w := e.ws.byName[t.Name]
	d := newDedup(newKeyer(t), true, ws.Window)
	for pg, err := range list(ctx, svc, ws.Next) {
		if errors.Is(err, extract.ErrNotFound) {
			e.skipped.add(svc)
			e.log.Warn().Str("service", svc).Msgf("service deleted during the run: kept, without %s", what)
			e.cps.hold.RLock()
			e.cps.commit(key, walkState{Done: true})
			e.cps.hold.RUnlock()
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s of service %s: %w", what, svc, err)
		}
		objs, err := d.page(pg.Items)
		if err != nil {
			pg.Release()
			return fmt.Errorf("list %s of service %s: %w", what, svc, err)
		}
		e.dupes.Add(int64(len(pg.Items) - len(objs)))
		parents := make([]parent, len(objs))
		lines := make([]string, len(objs))
		for i, o := range objs {
			parents[i] = parent{kind: kind, svc: svc, sid: sidOf(o)}
			lines[i] = logLine("P", kind, svc, parents[i].sid)
		}
		e.cps.hold.RLock()
		err = w.send(ctx, item{objs: objs, pages: []*extract.Page{pg.Page}, rc: transform.Context{ServiceSID: svc}})
		if err == nil {
			e.cps.commit(key, walkState{Next: pg.Next, Done: pg.Next == "", Window: slices.Clone(d.pageKeys)}, lines...)
		}
		e.cps.hold.RUnlock()
		if err != nil {
			return err
		}
		for _, p := range parents {
			if err := out.send(ctx, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// children fetches the child list of each parent it receives, whole,
// before any of it is queued, so that a parent deleted halfway through its
// list contributes no child rows. A 404 on the list means the parent was
// deleted during the run: it is counted and skipped, and the run goes on.
func (e *export) children(ctx context.Context, parents <-chan parent, kind string,
	list func(context.Context, string, string) iter.Seq2[extract.PageOf, error], w *tableWriter) error {
	k := newKeyer(w.table)
	for p := range parents {
		var pages []*extract.Page
		var objs []extract.Object
		release := func() {
			for _, pg := range pages {
				pg.Release()
			}
		}
		d := newDedup(k, false, nil)
		deleted := false
		for pg, err := range list(ctx, p.svc, p.sid) {
			if errors.Is(err, extract.ErrNotFound) {
				deleted = true
				break
			}
			if err != nil {
				release()
				return fmt.Errorf("list %s of %s %s (service %s): %w", w.table.Name, parentName(kind), p.sid, p.svc, err)
			}
			pages = append(pages, pg.Page)
			new, err := d.page(pg.Items)
			if err != nil {
				release()
				return fmt.Errorf("list %s of %s %s (service %s): %w", w.table.Name, parentName(kind), p.sid, p.svc, err)
			}
			objs = append(objs, new...)
		}
		e.dupes.Add(d.dropped)
		if deleted {
			release()
			pages, objs = nil, nil
			e.skipped.add(p.sid)
			e.log.Info().Str("service", p.svc).Str(parentName(kind), p.sid).Msgf("%s deleted during the run: kept, without child rows", parentName(kind))
		}
		e.cps.hold.RLock()
		err := w.send(ctx, item{objs: objs, pages: pages, rc: transform.Context{ServiceSID: p.svc}})
		if err == nil {
			e.cps.commit("", walkState{}, logLine("D", kind, p.svc, p.sid))
		}
		e.cps.hold.RUnlock()
		if err != nil {
			return err
		}
	}
	return nil
}

func parentName(kind string) string {
	if kind == kindUser {
		return "user"
	}
	return "conversation"
}

// parentQueue carries parents to the child-list workers; it is closed
// when every producer that added itself is done.
type parentQueue struct {
	ch chan parent
	mu sync.Mutex
	n  int
}

func newParentQueue() *parentQueue { return &parentQueue{ch: make(chan parent, childQueue)} }

func (q *parentQueue) add(n int) {
	q.mu.Lock()
	q.n += n
	q.mu.Unlock()
}

func (q *parentQueue) done() {
	q.mu.Lock()
	q.n--
	last := q.n == 0
	q.mu.Unlock()
	if last {
		close(q.ch)
	}
}

func (q *parentQueue) send(ctx context.Context, p parent) error {
	select {
	case q.ch <- p:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
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
