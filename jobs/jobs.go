// Package jobs orchestrates convsync's runs: it walks the API through a
// Source with bounded worker pools, turns objects into Arrow batches with
// package transform, and streams them into a Sink, which publishes them
// only when the whole run has succeeded.
//
// An export walks every service's user and conversation lists as long
// chains from the start, and reads each user's conversations and each
// conversation's participants (child lists) whole, in a pool of workers,
// as the parents are found. It checkpoints as it goes (see Checkpoint), so
// that an interrupted run can be resumed fetching again only what it had
// not made durable.
package jobs

import (
	"context"
	"iter"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/rs/zerolog"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/sink/runs"
	"github.com/convsync/convsync/transform"
)

// Source is the part of the API client an export walks. Users and
// Conversations start at the list's first page, or at a page an earlier
// walk yielded (from).
type Source interface {
	Services(ctx context.Context) iter.Seq2[extract.PageOf, error]
	Users(ctx context.Context, serviceSID, from string) iter.Seq2[extract.PageOf, error]
	UserConversations(ctx context.Context, serviceSID, userSID string) iter.Seq2[extract.PageOf, error]
	Conversations(ctx context.Context, serviceSID, from string) iter.Seq2[extract.PageOf, error]
	Participants(ctx context.Context, serviceSID, conversationSID string) iter.Seq2[extract.PageOf, error]
	Stats() extract.Stats
}

// Sink receives a run's record batches and publishes them. Nothing is
// visible before Publish; Checkpoint makes what was written durable, with
// the job's state, for a resume.
type Sink interface {
	Write(ctx context.Context, table string, rec arrow.Record) error
	Checkpoint(ctx context.Context, state []byte, log []string) error
	Publish(ctx context.Context, run runs.Record, state []byte, log []string) (runs.Record, error)
}

// Config holds what a run needs beyond its source and sink.
type Config struct {
	RunID        string
	SnapshotDate time.Time
	// Version is the convsync version recorded with the run.
	Version string
	// Workers is the number of child lists read at once per kind (user
	// conversations, participants); the client's limiter decides how many
	// requests are in flight. Default DefaultWorkers.
	Workers int
	// Services, when set, limits the run to these service SIDs.
	Services  []string
	Policy    transform.Policy
	BatchRows int
	Logger    zerolog.Logger
	// Progress, when set, is called with a snapshot about once a second and
	// once at the end.
	Progress func(Progress)
	// Allocator for Arrow buffers; memory.DefaultAllocator when nil.
	Allocator memory.Allocator
	// Fingerprint identifies the run's inputs (see Fingerprint).
	Fingerprint string
	// Resume, when set, continues an interrupted run (see LoadResume).
	Resume *Resume
	// Checkpoints, when set, says when to checkpoint; nil turns
	// checkpoints off.
	Checkpoints *Schedule
}

// Defaults of a run.
const (
	DefaultWorkers   = 100
	DefaultBatchRows = 16384   // rows per Arrow record handed to the sink, at most
	batchBytes       = 1 << 20 // and about this many bytes of values, at most
)

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
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
	Run runs.Record
	// Skipped holds the SIDs of services, users and conversations deleted
	// while this attempt walked them (their own rows are kept; they have
	// no child rows).
	Skipped []string
}

// startProgress calls report about once a second until the returned stop
// function is called.
func startProgress(ctx context.Context, report func(Progress), snap func() Progress) (stop func()) {
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
				report(snap())
			}
		}
	}()
	return func() { close(done); <-finished }
}
