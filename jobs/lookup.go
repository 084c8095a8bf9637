package jobs

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/runs"
	"github.com/convsync/convsync/transform"
)

// LookupSource is the part of the API client a lookup uses.
type LookupSource interface {
	Services(ctx context.Context) iter.Seq2[extract.PageOf, error]
	ParticipantConversations(ctx context.Context, serviceSID string, s extract.Subject) iter.Seq2[extract.PageOf, error]
	Stats() extract.Stats
}

// LookupSummary is what a finished lookup reports.
type LookupSummary struct {
	Run runs.Record
	// NotFound lists the subjects (by index into the request) with no rows
	// in any service.
	NotFound []int
}

// Lookup asks ParticipantConversations, in every service (or cfg.Services),
// which conversations each subject is in, and writes the rows, with the
// subject, to participant_conversations. Up to cfg.Workers lookups run at
// once.
func Lookup(ctx context.Context, src LookupSource, snk Sink, subjects []extract.Subject, cfg Config) (LookupSummary, error) {
	cfg.defaults()
	if len(subjects) == 0 {
		return LookupSummary{}, errors.New("lookup: no subjects given")
	}
	l := &lookup{src: src, cfg: cfg, started: time.Now().UTC(), found: make([]atomic.Int64, len(subjects)),
		ws: newWriters(schemas.Lookup, cfg.Policy, cfg.RunID, cfg.Logger), keyer: newKeyer(schemas.ParticipantConversations)}
	w := l.ws.byName[schemas.ParticipantConversations.Name]

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.run(gctx, snk, cfg.Allocator, cfg.BatchRows) })
	stopProgress := startProgress(gctx, cfg.Progress, func() Progress {
		return Progress{Elapsed: time.Since(l.started), Rows: l.ws.counts(), Stats: src.Stats()}
	})
	var services []string // written by the lookup goroutine, read after Wait
	g.Go(func() error {
		var err error
		if services, err = lookupServices(gctx, src, cfg.Services); err != nil {
			return err
		}
		work, wctx := errgroup.WithContext(gctx)
		work.SetLimit(cfg.Workers)
		for i, subj := range subjects {
			for _, svc := range services {
				work.Go(func() error { return l.one(wctx, w, i, subj, svc) })
			}
		}
		if err := work.Wait(); err != nil {
			return err
		}
		l.ws.closeAll()
		return nil
	})
	err := g.Wait()
	stopProgress()

	sum := LookupSummary{Run: l.record(services)}
	for i := range l.found {
		if l.found[i].Load() == 0 {
			sum.NotFound = append(sum.NotFound, i)
		}
	}
	if err != nil {
		sum.Run.Status = runs.Failed
		return sum, err
	}
	run, err := snk.Publish(ctx, sum.Run, nil, nil)
	sum.Run = run
	if err != nil {
		sum.Run.Status = runs.Failed
		return sum, err
	}
	if cfg.Progress != nil {
		cfg.Progress(Progress{Elapsed: time.Since(l.started), Rows: run.Rows, Stats: src.Stats(), Done: true})
	}
	return sum, nil
}

// lookup is one lookup run in flight.
type lookup struct {
	src     LookupSource
	cfg     Config
	started time.Time
	ws      *writers
	keyer   keyer
	found   []atomic.Int64 // rows found per subject
	dupes   atomic.Int64
}

// one looks subject i up in one service, queueing its rows for w.
func (l *lookup) one(ctx context.Context, w *tableWriter, i int, subj extract.Subject, svc string) error {
	rc := transform.Context{ServiceSID: svc, SubjectKind: subj.Kind(), Subject: subj.Value()}
	d := newDedup(l.keyer, false, nil)
	for pg, err := range l.src.ParticipantConversations(ctx, svc, subj) {
		var objs []extract.Object
		if err == nil {
			if objs, err = d.page(pg.Items); err != nil {
				pg.Release()
			}
		}
		if err == nil {
			l.dupes.Add(int64(len(pg.Items) - len(objs)))
			l.found[i].Add(int64(len(objs)))
			err = w.send(ctx, item{objs: objs, pages: []*extract.Page{pg.Page}, rc: rc})
		}
		if err != nil {
			// The error names the subject by number only: its value may be PII.
			return fmt.Errorf("look up subject %d (%s) in service %s: %w", i+1, subj.Kind(), svc, err)
		}
	}
	return nil
}

// record is the lookup's run record.
func (l *lookup) record(services []string) runs.Record {
	st := l.src.Stats()
	return runs.Record{
		RunID: l.cfg.RunID, Command: "lookup", Version: l.cfg.Version, SnapshotDate: runs.Date(l.cfg.SnapshotDate),
		StartedAt: l.started, EndedAt: time.Now().UTC(), Status: runs.Succeeded, PII: l.cfg.Policy.Mode,
		Rows: l.ws.counts(), Requests: st.Requests, Retries: st.Retries, Throttled: st.Throttled, Duplicates: l.dupes.Load(),
		Services: services, UnknownFields: l.ws.unknownFields(nil), ConcurrencyLimit: st.Limit, ConcurrencyPeak: st.PeakInFlight,
	}
}

// lookupServices returns the SIDs of the services to search: all the
// account's, or those of only (each of which the account must have).
func lookupServices(ctx context.Context, src LookupSource, only []string) ([]string, error) {
	filter := newServiceFilter(only)
	d := newDedup(newKeyer(schemas.Services), true, nil)
	var out []string
	for pg, err := range src.Services(ctx) {
		if err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		objs, err := d.page(pg.Items)
		if err != nil {
			pg.Release()
			return nil, fmt.Errorf("list services: %w", err)
		}
		for _, o := range objs {
			if sid := sidOf(o); filter.keep(sid) {
				out = append(out, sid)
			}
		}
		pg.Release()
	}
	return out, filter.check()
}
