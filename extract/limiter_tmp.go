package extract

// TEMPORARY: a fixed limiter with the adaptive limiter's shape, until the
// adaptive one lands.

import (
	"context"
	"sync"
	"time"
)

const (
	prioFirst = 0 // first page of a child list
	prioNext  = 1 // a later page of a child list under way
	prioChain = 2 // a page of a long list (services, users, conversations)
	prioRetry = 3 // a throttled request again
)

type outcomeKind int

const (
	outcomeOK outcomeKind = iota
	outcomeThrottled
	outcomeOther
)

type outcome struct {
	kind       outcomeKind
	concurrent int // Twilio-Concurrent-Requests, -1 if absent
	rtt        time.Duration
}

type limiterStats struct {
	Limit, InFlight, Peak int
	Throttled, Cuts       int64
}

type limiter struct {
	sem  chan struct{}
	mu   sync.Mutex
	st   limiterStats
	max  int
}

func newLimiter(max int) *limiter { return &limiter{sem: make(chan struct{}, max), max: max} }

type slot struct{ l *limiter }

func (l *limiter) acquire(ctx context.Context, prio int) (*slot, error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	l.mu.Lock()
	l.st.InFlight++
	l.st.Peak = max(l.st.Peak, l.st.InFlight)
	l.mu.Unlock()
	return &slot{l}, nil
}

func (s *slot) done(o outcome) {
	s.l.mu.Lock()
	s.l.st.InFlight--
	if o.kind == outcomeThrottled {
		s.l.st.Throttled++
	}
	s.l.mu.Unlock()
	<-s.l.sem
}

func (l *limiter) snapshot() limiterStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.st
	st.Limit = l.max
	return st
}

func (l *limiter) throttlePause() time.Duration { return 50 * time.Millisecond }
