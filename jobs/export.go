package jobs

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/transform"
)

// Source is the part of the API client an export walks.
type Source interface {
	Services(ctx context.Context) iter.Seq2[Object, error]
	Users(ctx context.Context, serviceSID string) iter.Seq2[Object, error]
	UserConversations(ctx context.Context, serviceSID, userSID string) iter.Seq2[Object, error]
	Conversations(ctx context.Context, serviceSID string) iter.Seq2[Object, error]
	Participants(ctx context.Context, serviceSID, conversationSID string) iter.Seq2[Object, error]
	Stats() extract.Stats
}

// Config holds what a run needs beyond its source and sink.
type Config struct {
	RunID        string
	SnapshotDate time.Time
	// Concurrency is the number of child lists fetched at once per kind
	// (user conversations, participants). The client separately caps
	// requests in flight.
	Concurrency int
	// Services, when set, limits the run to these service SIDs.
	Services  []string
	Policy    transform.Policy
	BatchRows int
	Logger    *zerolog.Logger
	// Progress, when set, is called with a snapshot about once a second and
	// once at the end.
	Progress func(Progress)
	// Allocator for Arrow buffers; memory.DefaultAllocator when nil.
	Allocator memory.Allocator
	// Fingerprint identifies the run's inputs in its checkpoints.
	Fingerprint string
	// Resume, when set, continues an interrupted run (see LoadResume).
	Resume *Resume
	// CheckpointFirst and CheckpointMax set the checkpoint schedule
	// (defaults DefaultCheckpointFirst and DefaultCheckpointMax); a
	// negative CheckpointFirst turns checkpoints off.
	CheckpointFirst, CheckpointMax time.Duration
}

func (c *Config) defaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.BatchRows <= 0 {
		c.BatchRows = DefaultBatchRows
	}
	if c.Allocator == nil {
		c.Allocator = memory.DefaultAllocator
	}
	if c.Policy.Mode == "" {
		c.Policy.Mode = transform.PIIKeep
	}
	if c.CheckpointFirst == 0 {
		c.CheckpointFirst = DefaultCheckpointFirst
	}
	if c.CheckpointMax <= 0 {
		c.CheckpointMax = DefaultCheckpointMax
	}
}

// Progress is a snapshot of a run in flight.
type Progress struct {
	Elapsed        time.Duration
	Rows           map[string]int64
	Stats          extract.Stats
	ParentsSkipped int64
	Done           bool
}

// Summary is what a finished run reports.
type Summary struct {
	Run sink.Run
	// Skipped holds the SIDs of users and conversations deleted while the
	// run walked them (their own rows are kept; they have no child rows).
	Skipped []string
	// Duplicates is the number of rows dropped because their key was seen
	// already (Twilio's cursors can repeat a row when data changes).
	Duplicates int64
}

// Export walks every service of the account (or cfg.Services) and writes
// the five export tables to snk, committing only when every list was read
// completely. On error nothing is committed; the caller ends snk with
// Suspend (which keeps a checkpointed run for a resume) or Close.
func Export(ctx context.Context, src Source, snk Sink, cfg Config) (Summary, error) {
	cfg.defaults()
	log := logger(cfg.Logger)
	started := time.Now().UTC()
	ws := newWriters(schemas.Export, cfg.Policy, cfg.RunID)
	cps := &checkpoints{prior: cfg.Resume}
	var prior ResumeState // what earlier attempts of this run did
	if cfg.Resume != nil {
		prior = cfg.Resume.State
		started = prior.Started
		log.Info().Int("parents_finished", cfg.Resume.Finished()).Int("checkpoints", prior.Checkpoints).
			Msg("resuming the interrupted run: fetching only the child lists it had not finished")
	}
	skipped := &skips{}

	g, gctx := errgroup.WithContext(ctx)
	for _, w := range ws.order {
		g.Go(func() error { return w.run(gctx, snk, cfg.Allocator, cfg.BatchRows) })
	}
	stopProgress := startProgress(gctx, cfg.Progress, started, ws, src, skipped.count)

	// Producers: the fetch side. When every producer is done, the writers'
	// queues are closed and the writers flush what they hold.
	prod, pctx := errgroup.WithContext(gctx)
	services := make(chan string, 16)
	var walked []string // written by the services producer, read after Wait
	prod.Go(func() error {
		defer close(services)
		return walkServices(pctx, src, cfg, ws.byName[schemas.Services.Name], services, &walked)
	})
	users := make(chan [2]string, cfg.Concurrency*4)
	convs := make(chan [2]string, cfg.Concurrency*4)
	// One lister per service list kind, fed by the services found.
	serviceFan := make([]chan string, 2)
	for i := range serviceFan {
		serviceFan[i] = make(chan string, 16)
	}
	prod.Go(func() error {
		defer func() {
			for _, c := range serviceFan {
				close(c)
			}
		}()
		for s := range services {
			for _, c := range serviceFan {
				select {
				case c <- s:
				case <-pctx.Done():
					return context.Cause(pctx)
				}
			}
		}
		return nil
	})
	prod.Go(func() error {
		defer close(users)
		return listParents(pctx, serviceFan[0], "user", src.Users, ws.byName[schemas.Users.Name], users, skipped, log)
	})
	prod.Go(func() error {
		defer close(convs)
		return listParents(pctx, serviceFan[1], "conversation", src.Conversations, ws.byName[schemas.Conversations.Name], convs, skipped, log)
	})
	for range cfg.Concurrency {
		prod.Go(func() error {
			return listChildren(pctx, users, "user", src.UserConversations, ws.byName[schemas.UserConversations.Name], cps, skipped, log)
		})
		prod.Go(func() error {
			return listChildren(pctx, convs, "conversation", src.Participants, ws.byName[schemas.Participants.Name], cps, skipped, log)
		})
	}
	// Checkpoints run beside the producers and stop before the queues close.
	state := func() ResumeState {
		st := src.Stats()
		rows := map[string]int64{}
		for _, t := range ResumableTables {
			rows[t] = prior.Rows[t] + ws.byName[t].rows.Load()
		}
		return ResumeState{Fingerprint: cfg.Fingerprint, Started: started, Rows: rows,
			Requests: prior.Requests + st.Requests, Retries: prior.Retries + st.Retries,
			Skipped: prior.Skipped + skipped.count(), Checkpoints: prior.Checkpoints}
	}
	stopCP := make(chan struct{})
	cpDone := make(chan error, 1)
	go func() {
		cpDone <- cps.schedule(gctx, stopCP, cfg.CheckpointFirst, cfg.CheckpointMax, func() error {
			err := cps.take(gctx, snk, ws, state)
			if err == nil {
				log.Debug().Int("checkpoint", cps.taken+prior.Checkpoints).Msg("checkpoint taken")
			}
			return err
		})
	}()
	g.Go(func() error { return <-cpDone })
	g.Go(func() error {
		err := prod.Wait()
		close(stopCP)
		if err == nil {
			ws.closeAll()
		}
		return err
	})
	err := g.Wait()
	stopProgress()

	sum := Summary{Skipped: skipped.list()}
	for _, w := range ws.order {
		sum.Duplicates += w.dupes.Load()
	}
	st := src.Stats()
	sum.Run = sink.Run{
		ID:             cfg.RunID,
		Command:        "export",
		SnapshotDate:   cfg.SnapshotDate,
		Started:        started,
		Ended:          time.Now().UTC(),
		Status:         "succeeded",
		PII:            cfg.Policy.Mode,
		Rows:           ws.counts(),
		Requests:       prior.Requests + st.Requests,
		Retries:        prior.Retries + st.Retries,
		ParentsSkipped: prior.Skipped + skipped.count(),
		Services:       walked,
	}
	for t, n := range prior.Rows {
		sum.Run.Rows[t] += n
	}
	return sum, publish(ctx, snk, &sum.Run, err, cfg.Progress, src.Stats())
}

// walkServices lists the account's services (or cfg.Services), queues
// their rows and sends the SIDs to walk on out.
func walkServices(ctx context.Context, src Source, cfg Config, w *tableWriter, out chan<- string, walked *[]string) error {
	list := func(ctx context.Context) iter.Seq2[Object, error] { return w.unique(src.Services(ctx)) }
	return eachService(ctx, list, cfg.Services, func(obj Object, sid string) error {
		*walked = append(*walked, sid)
		if err := w.send(ctx, row{obj: obj, rc: transform.Context{ServiceSID: sid}}); err != nil {
			return err
		}
		select {
		case out <- sid:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
}

// listParents lists users or conversations of each service it receives,
// queues their rows and sends (service, sid) pairs on for their children.
// A service deleted during the run (a 404 on the list) keeps its row and is
// counted as skipped, like a deleted user or conversation.
func listParents(ctx context.Context, services <-chan string, what string,
	list func(context.Context, string) iter.Seq2[Object, error], w *tableWriter, out chan<- [2]string,
	skipped *skips, log zerolog.Logger) error {
	for svc := range services {
		for obj, err := range w.unique(list(ctx, svc)) {
			if errors.Is(err, extract.ErrNotFound) {
				skipped.add(svc)
				log.Warn().Str("service", svc).Msgf("service deleted during the run: kept, without %ss", what)
				break
			}
			if err != nil {
				return fmt.Errorf("list %ss of %s: %w", what, svc, err)
			}
			sid, err := sidOf(obj, what)
			if err != nil {
				return fmt.Errorf("list %ss of %s: %w", what, svc, err)
			}
			if err := w.send(ctx, row{obj: obj, rc: transform.Context{ServiceSID: svc}}); err != nil {
				return err
			}
			select {
			case out <- [2]string{svc, sid}:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
	}
	return nil
}

// listChildren fetches the child list of each parent it receives. A 404 on
// the list means the parent was deleted during the run: it is counted and
// skipped, and the run goes on.
func listChildren(ctx context.Context, parents <-chan [2]string, what string,
	list func(context.Context, string, string) iter.Seq2[Object, error], w *tableWriter,
	cps *checkpoints, skipped *skips, log zerolog.Logger) error {
	for p := range parents {
		svc, sid := p[0], p[1]
		key := unitKey(what, svc, sid)
		if cps.finished(key) {
			continue // an earlier attempt of this run has its rows
		}
		objs, err := collect(w.unique(list(ctx, svc, sid)))
		if err != nil && !errors.Is(err, extract.ErrNotFound) {
			return fmt.Errorf("list %s %s of service %s: %w", what, sid, svc, err)
		}
		if err := queueChildren(ctx, w, cps, key, svc, sid, what, objs, err != nil, skipped, log); err != nil {
			return err
		}
	}
	return nil
}

// queueChildren queues one parent's child rows, or counts the parent as
// deleted, and marks it finished, all under the checkpoint hold so that a
// checkpoint sees either all of it or none.
func queueChildren(ctx context.Context, w *tableWriter, cps *checkpoints, key, svc, sid, what string, objs []Object, deleted bool,
	skipped *skips, log zerolog.Logger) error {
	cps.hold.RLock()
	defer cps.hold.RUnlock()
	if deleted {
		skipped.add(sid)
		log.Info().Str("service", svc).Str(what, sid).Msgf("%s deleted during the run: kept, without child rows", what)
	}
	for _, obj := range objs {
		if err := w.send(ctx, row{obj: obj, rc: transform.Context{ServiceSID: svc}}); err != nil {
			return err
		}
	}
	cps.markDone(key)
	return nil
}

// startProgress calls report about once a second until the returned stop
// function is called.
func startProgress(ctx context.Context, report func(Progress), started time.Time, ws *writers, src interface{ Stats() extract.Stats }, skipped func() int64) (stop func()) {
	if report == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				report(Progress{Elapsed: time.Since(started), Rows: ws.counts(), Stats: src.Stats(), ParentsSkipped: skipped()})
			}
		}
	}()
	return func() { close(done); <-finished }
}
