package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
)

// An export checkpoints now and then, so that an interrupted run can be
// resumed (export --resume) without fetching again what it had finished.
//
// The unit of work is a parent's child list: a user's conversations or a
// conversation's participants. A checkpoint holds every child worker off
// (they queue a parent's rows under a shared lock), sends a marker down the
// queues of the child tables, whose writers flush and complete their
// current part file when they reach it, and then records in the sinks the
// parents finished since the last checkpoint. A resumed run keeps the child
// tables' completed parts, lists the services, users and conversations
// again (a request per 50 or 100 of them) and fetches only the child lists
// of parents not yet finished.

// ResumableTables are the tables whose staged rows a resumed run keeps;
// the others are listed again from scratch.
var ResumableTables = []string{schemas.UserConversations.Name, schemas.Participants.Name}

// Default checkpoint schedule: the first after DefaultCheckpointFirst, then
// at doubling intervals up to DefaultCheckpointMax (each checkpoint starts
// new part files, so long runs checkpoint less often).
const (
	DefaultCheckpointFirst = 5 * time.Second
	DefaultCheckpointMax   = 2 * time.Minute
)

// ResumeState is the job's part of a checkpoint.
type ResumeState struct {
	// Fingerprint identifies the run's inputs (API, services, PII mode and
	// key, snapshot date, outputs); a run with other inputs does not resume.
	Fingerprint string           `json:"fingerprint"`
	Started     time.Time        `json:"started"`
	Rows        map[string]int64 `json:"rows"` // rows of ResumableTables in completed parts
	Requests    int64            `json:"requests"`
	Retries     int64            `json:"retries"`
	Skipped     int64            `json:"parents_skipped"`
	Checkpoints int              `json:"checkpoints"`
}

// Resume is what a resumed export continues from.
type Resume struct {
	State ResumeState
	done  map[uint64]struct{}
}

// LoadResume reads the job's state from a sink checkpoint.
func LoadResume(cp *sink.Checkpoint) (*Resume, error) {
	r := &Resume{done: make(map[uint64]struct{}, len(cp.Done))}
	if err := json.Unmarshal(cp.State, &r.State); err != nil {
		return nil, fmt.Errorf("checkpoint of run %s: %w", cp.RunID, err)
	}
	for _, k := range cp.Done {
		r.done[keyHash(k)] = struct{}{}
	}
	return r, nil
}

// Finished is the number of parents the resumed run need not fetch again.
func (r *Resume) Finished() int { return len(r.done) }

// keyHash is a stable 64-bit hash of a work unit's key.
func keyHash(k string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(k))
	return h.Sum64()
}

// unitKey names one parent's child list.
func unitKey(what, svc, sid string) string { return what + ":" + svc + "/" + sid }

// checkpoints coordinates an export's checkpoints.
type checkpoints struct {
	// hold is held shared while a worker queues one parent's rows, and
	// exclusively while a checkpoint is taken.
	hold    sync.RWMutex
	mu      sync.Mutex // guards pending
	pending []string   // parents finished since the last checkpoint
	prior   *Resume
	taken   int
}

// finished reports whether an earlier attempt finished the unit.
func (c *checkpoints) finished(key string) bool {
	if c.prior == nil {
		return false
	}
	_, ok := c.prior.done[keyHash(key)]
	return ok
}

// markDone records a finished unit (call with hold held shared).
func (c *checkpoints) markDone(key string) {
	c.mu.Lock()
	c.pending = append(c.pending, key)
	c.mu.Unlock()
}

// take records a checkpoint: the child tables' writers complete their
// part files, then the sink records the parents finished since the last one.
func (c *checkpoints) take(ctx context.Context, snk Sink, ws *writers, state func() ResumeState) error {
	c.hold.Lock()
	defer c.hold.Unlock()
	for _, name := range ResumableTables {
		w := ws.byName[name]
		ack := make(chan error, 1)
		if err := w.send(ctx, row{mark: ack}); err != nil {
			return err
		}
		select {
		case err := <-ack:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	c.mu.Lock()
	done := c.pending
	c.pending = nil
	c.mu.Unlock()
	st := state()
	c.taken++
	st.Checkpoints = c.taken
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := snk.Checkpoint(ctx, b, done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// schedule takes checkpoints at growing intervals until stop is closed or
// ctx is done; it returns the first error.
func (c *checkpoints) schedule(ctx context.Context, stop <-chan struct{}, first, limit time.Duration, take func() error) error {
	if first < 0 {
		return nil
	}
	wait := first
	for {
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if err := take(); err != nil {
			return err
		}
		wait = min(wait*2, limit)
	}
}
