package jobs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/sink/stage"
)

// checkpointCounter passes everything on to the run's real outputs and
// cancels the run after its n-th checkpoint.
type checkpointCounter struct {
	*sink.Outputs
	n      int32
	seen   atomic.Int32
	cancel context.CancelFunc
}

func (c *checkpointCounter) Checkpoint(ctx context.Context, state []byte, log []string) error {
	err := c.Outputs.Checkpoint(ctx, state, log)
	if c.seen.Add(1) == c.n {
		c.cancel()
	}
	return err
}

// TestResumeFetchesOnlyWhatWasNotDurable interrupts an export after a few
// checkpoints and resumes it: the resumed attempt sends exactly the
// requests the checkpoint leaves to do (the services again, the rest of
// each user and conversation list from its recorded position, the child
// lists not finished), nothing more, and both outputs then hold every row
// of the dataset exactly once, the interrupted attempt's rows included.
func TestResumeFetchesOnlyWhatWasNotDurable(t *testing.T) {
	ds, srv := startAPI(t, fakeapi.DefaultConfig(), fakeapi.Faults{Latency: 5 * time.Millisecond, DeletedConversations: 0.03, DeletedUsers: 0.02})
	o := newOutputs(t)
	const runID = "run-resume"
	cfg := jobs.Config{RunID: runID, SnapshotDate: date, Workers: 3, Fingerprint: "fp",
		Checkpoints: &jobs.Schedule{Min: 150 * time.Millisecond, Max: 150 * time.Millisecond, Share: 0.01}}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := o.open(t, schemas.Export, runID, nil, false)
	counting := &checkpointCounter{Outputs: out, n: 4, cancel: cancel}
	first := client(t, srv, 3)
	if _, err := jobs.Export(ctx, first, counting, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("first attempt: err = %v, want it cancelled", err)
	}
	staging := out.Staging()
	if !out.Resumable() {
		t.Fatal("the interrupted attempt left nothing to resume")
	}
	out.Close()
	cp, err := stage.ReadCheckpoint(staging)
	if err != nil {
		t.Fatal(err)
	}
	done := testkit.DoneFrom(t, cp)
	if len(done.Children) == 0 {
		t.Fatal("the checkpoint vouches for no finished child list")
	}

	out = o.open(t, schemas.Export, "another-id", nil, true)
	if out.Resumed() == nil || out.RunID() != runID {
		t.Fatalf("resume found %v (run %s)", out.Resumed(), out.RunID())
	}
	if cfg.Resume, err = jobs.LoadResume(out.Resumed()); err != nil {
		t.Fatal(err)
	}
	second := client(t, srv, 3)
	sum, err := jobs.Export(context.Background(), second, out, cfg)
	if err != nil {
		t.Fatalf("resumed attempt: %v", err)
	}
	full := testkit.Requests(ds, srv, nil)
	want := testkit.Requests(ds, srv, done)
	t.Logf("a full export needs %d requests; the checkpoint leaves %d; the interrupted attempt sent %d, the resumed one %d",
		full, want, first.Stats().Requests, second.Stats().Requests)
	if got := second.Stats().Requests; got != want {
		t.Errorf("resumed attempt sent %d requests, the checkpoint leaves exactly %d to do", got, want)
	}
	if sum.Run.Requests != done.Requests+second.Stats().Requests {
		t.Errorf("run records %d requests; the checkpoint %d plus the resumed attempt's %d", sum.Run.Requests, done.Requests, second.Stats().Requests)
	}
	o.check(t, ds, srv, runID)
	if deleted := testkit.Skipped(ds, srv); sum.Run.ParentsSkipped != deleted {
		t.Errorf("parents skipped %d over both attempts, simulator deleted %d", sum.Run.ParentsSkipped, deleted)
	}
}
