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
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/transform"
)

// LookupSource is the part of the API client a lookup uses.
type LookupSource interface {
	Services(ctx context.Context) iter.Seq2[Object, error]
	ParticipantConversations(ctx context.Context, serviceSID string, s extract.Subject) iter.Seq2[Object, error]
	Stats() extract.Stats
}

// LookupSummary is what a finished lookup reports.
type LookupSummary struct {
	Run sink.Run
	// NotFound lists the subjects (by index into the request) with no rows
	// in any service.
	NotFound []int
}

// Lookup asks ParticipantConversations, in every service (or cfg.Services),
// which conversations each subject is in, and writes the rows, with the
// subject, to participant_conversations. Up to cfg.Concurrency lookups run
// at once.
func Lookup(ctx context.Context, src LookupSource, snk Sink, subjects []extract.Subject, cfg Config) (LookupSummary, error) {
	cfg.defaults()
	started := time.Now().UTC()
	if len(subjects) == 0 {
		return LookupSummary{}, errors.New("lookup: no subjects given")
	}
	ws := newWriters(schemas.Lookup, cfg.Policy, cfg.RunID)
	w := ws.byName[schemas.ParticipantConversations.Name]
	found := make([]atomic.Int64, len(subjects))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.run(gctx, snk, cfg.Allocator, cfg.BatchRows) })
	stopProgress := startProgress(gctx, cfg.Progress, started, ws, src, func() int64 { return 0 })

	var services []string // written by the lookup goroutine, read after Wait
	g.Go(func() error {
		var err error
		services, err = lookupServices(gctx, src, cfg.Services)
		if err != nil {
			return err
		}
		work, wctx := errgroup.WithContext(gctx)
		work.SetLimit(cfg.Concurrency)
		for i, subj := range subjects {
			for _, svc := range services {
				work.Go(func() error {
					kind, value := "identity", subj.Identity
					if subj.Address != "" {
						kind, value = "address", subj.Address
					}
					rc := transform.Context{ServiceSID: svc, SubjectKind: kind, Subject: value}
					for obj, err := range w.unique(src.ParticipantConversations(wctx, svc, subj)) {
						if err != nil {
							// The error names the subject by number only: its value may be PII.
							return fmt.Errorf("look up subject %d (%s) in service %s: %w", i+1, kind, svc, err)
						}
						found[i].Add(1)
						if err := w.send(wctx, row{obj: obj, rc: rc}); err != nil {
							return err
						}
					}
					return nil
				})
			}
		}
		if err := work.Wait(); err != nil {
			return err
		}
		ws.closeAll()
		return nil
	})
	err := g.Wait()
	stopProgress()

	st := src.Stats()
	sum := LookupSummary{Run: sink.Run{
		ID:           cfg.RunID,
		Command:      "lookup",
		SnapshotDate: cfg.SnapshotDate,
		Started:      started,
		Ended:        time.Now().UTC(),
		Status:       "succeeded",
		PII:          cfg.Policy.Mode,
		Rows:         ws.counts(),
		Requests:     st.Requests,
		Retries:      st.Retries,
		Services:     services,
	}}
	for i := range found {
		if found[i].Load() == 0 {
			sum.NotFound = append(sum.NotFound, i)
		}
	}
	return sum, publish(ctx, snk, &sum.Run, err, cfg.Progress, src.Stats())
}

// lookupServices returns the SIDs of the services to search.
func lookupServices(ctx context.Context, src LookupSource, only []string) ([]string, error) {
	var out []string
	err := eachService(ctx, src.Services, only, func(_ Object, sid string) error {
		out = append(out, sid)
		return nil
	})
	return out, err
}
