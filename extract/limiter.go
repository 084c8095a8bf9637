package extract

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// limiter is an adaptive cap on the requests convsync keeps in flight. It
// finds the account's concurrency limit, which Twilio does not publish (1 to
// about 100), shares with the account's other applications, and enforces by
// answering 429 (code 20429) at once: there is no latency signal, only
// throttles and the Twilio-Concurrent-Requests header, the account's requests
// in flight (ours and other applications') as the API counted them.
//
// The limit is min(cwnd, plateau), clamped to [1, max].
//
// Slow start: cwnd starts at 4 and grows by 1 per success, doubling per
// round trip, until the first throttle.
//
// The plateau is acct - others: the account's estimated limit less the other
// applications' requests in flight. A success whose header says h proves the
// account holds h requests, so acct >= h; and h - a is a sample of others,
// a being our requests in flight when the request was sent or when it was
// answered, whichever is more (the API counted it with ours at some moment
// in between; the larger count keeps requests that overtook each other from
// showing others that are not there). others is the largest sample of the
// current and the previous window of 4 srtt, so that a dip in another
// application's load between two of its requests does not hand us its slot
// (and it a 429), and a load that ended gives its room back within 8 srtt.
// The plateau thus follows the other applications' load both ways without a
// throttle.
//
// A throttle of a request sent with a of ours in flight (itself included)
// says the account had no room for our a-th: our level is t = a-1. When the
// header says the account was full (h >= acct-1), acct becomes max(h-1, the
// largest success header of the last 8 srtt): right whether a 429's header
// counts the refused request (h = C+1) or not (h = C, and successes have
// shown C), and not lowered by a stray 429 while we hold fewer. others is
// raised so that the plateau is at most t, and cwnd = min(cwnd, t). This
// precise cut, rather than Reno's cwnd*beta, is what makes a hard cap cheap:
// against one, Reno's sawtooth at C=4 uses 84% of the account and gets 429
// for 9% of its requests (beta 0.7; 0.5: 73% and 7%).
//
// At most one cut per round trip: only a throttle of a request sent after
// the last cut (by send sequence number) cuts; the others of a burst were
// sent under the old limit and carry no news.
//
// Multiplicative decrease: when a request sent under the level the last cut
// set is refused too, before any of them succeeded, the room shrank by more
// than one request and by an unknown amount (a lowered account limit, an
// application that took many slots at once, no header to tell). Then cwnd =
// beta*t, beta = 0.7, and acct is taken from this header even if it says
// the account had room. Without this step a drop of the account limit from
// 64 to 16 gets 429 for 4% of requests instead of 0.4%; beta 0.5 and 0.7 do
// equally well there, and 0.7 gives up less when the room shrank a little.
//
// Below the plateau cwnd grows by 1 per success up to it: the header shows
// the room is free (an application left), or the last cut went deeper than
// needed.
//
// Probing: at the plateau acct grows by 1/400 per success, one request more
// after 400 successes there. A failed probe costs one 429 and is undone by
// the precise cut; a successful one keeps its gain. This finds a raised
// account limit, and without the header the room another application gave
// back, for about 0.25% of requests answered 429 (1/100: 0.7%, and a limit
// raised mid-run is reached sooner: 1.07x instead of 1.15x the bound).
//
// Without the header a throttle is read as if the header said a + others
// (the current estimate), so the limiter still learns t = a-1 and probes
// above it; room given back is then found by probing only.
//
// The limit grows only on the success of a request sent before the limiter
// was last full (every slot taken, or a caller waiting), so that a run with
// few callers does not inflate it beyond twice their number.
//
// When throttles keep coming with nothing else of ours in flight (other
// applications hold the account and the limit is 1), retrying at once would
// spin: throttlePause gives a jittered pause, 50 ms doubling to 1 s, to wait
// before retrying.
//
// Waiters are served by priority (prioRetry, then prioChain, then
// prioNextPage, then prioFirstPage), first come first served within one. A limiter is safe for
// concurrent use; acquire allocates the slot and, only when it must wait, a
// channel.
type limiter struct {
	mu    sync.Mutex
	clock func() time.Time
	randN func(int64) int64

	max        int     // hard ceiling (--concurrency)
	probeEvery float64 // successes at the plateau per request more
	beta       float64 // multiplicative decrease on a repeated refusal

	cwnd       float64   // Reno window
	slowStart  bool      // no throttle seen yet
	okSinceCut bool      // a request sent after the last cut has succeeded
	acct       float64   // account limit estimate; 0: unknown
	okPeak     maxWindow // largest header total on a success, recently
	others     maxWindow
	srtt       time.Duration

	seq      uint64 // last send sequence number granted
	cutSeq   uint64 // first one sent after the last cut
	fullSeq  uint64 // last one granted while every slot was taken or someone waited
	inflight int
	waiting  int
	queues   [numPrio]slotQueue
	streak   int // throttles at limit 1 since the last success

	throttled, cuts, backoffs, probes int64
}

// Request priorities for acquire; higher is served first.
const (
	prioFirstPage = iota // first page of a child list
	prioNextPage         // continuation page of a child list already under way
	prioChain            // a page of a long list (services, users, conversations), which must start early
	prioRetry            // retry of a throttled request
	numPrio
)

// Limiter defaults.
const (
	defaultInitialLimit = 4
	defaultProbeEvery   = 400
	defaultBeta         = 0.7
	throttlePauseBase   = 50 * time.Millisecond
	throttlePauseMax    = time.Second
	othersWindowDefault = time.Second // until a round trip has been measured
	peakWindows         = 2           // success peaks are kept twice as long as others samples
)

// limiterOption changes a limiter default.
type limiterOption func(*limiter)

// withInitialLimit sets the starting limit (default 4).
func withInitialLimit(n int) limiterOption {
	return func(l *limiter) { l.cwnd = float64(max(1, n)) }
}

// withProbeEvery sets the successes at the plateau per extra request probed
// (default 400).
func withProbeEvery(n int) limiterOption {
	return func(l *limiter) { l.probeEvery = float64(max(1, n)) }
}

// withBeta sets the multiplicative decrease applied when the level of the
// last cut is refused too (default 0.7; 1 disables it).
func withBeta(b float64) limiterOption {
	return func(l *limiter) {
		if b > 0 && b <= 1 {
			l.beta = b
		}
	}
}

// withRand sets the jitter source of throttlePause; randN returns a value in
// [0, n).
func withRand(randN func(int64) int64) limiterOption {
	return func(l *limiter) { l.randN = randN }
}

// newLimiter returns a limiter that never allows more than ceiling requests
// in flight (--concurrency; below 1 is taken as 1). clock is nil for
// time.Now.
func newLimiter(ceiling int, clock func() time.Time, opts ...limiterOption) *limiter {
	if clock == nil {
		clock = time.Now
	}
	l := &limiter{
		clock:      clock,
		randN:      rand.Int64N,
		max:        max(1, ceiling),
		probeEvery: defaultProbeEvery,
		beta:       defaultBeta,
		cwnd:       defaultInitialLimit,
		slowStart:  true,
		okSinceCut: true,
	}
	for _, o := range opts {
		o(l)
	}
	l.cwnd = math.Min(l.cwnd, float64(l.max))
	return l
}

// slot is one request's permission to be in flight. It records when the
// request was granted, which is when the caller sends it.
type slot struct {
	l     *limiter
	seq   uint64    // send sequence number
	sent  time.Time // send time
	ours  int       // our requests in flight when sent, this one included
	prio  int
	state slotState
	ready chan struct{} // closed when granted; nil unless the slot waited

	prev, next *slot // wait queue links
}

type slotState uint8

const (
	slotWaiting slotState = iota
	slotGranted
	slotDone
)

// outcomeKind is what became of a request.
type outcomeKind uint8

const (
	// outcomeFailed is a failure that says nothing about concurrency: 5xx,
	// network error, cancellation, a 429 with another code. It releases the
	// slot only.
	outcomeFailed outcomeKind = iota
	// outcomeOK is a request the API processed: a 2xx, or a 4xx other
	// than 429.
	outcomeOK
	// outcomeThrottled is a 429 with Twilio code 20429.
	outcomeThrottled
)

// outcome is reported to (*slot).done.
type outcome struct {
	kind outcomeKind
	// concurrent is the response's Twilio-Concurrent-Requests, -1 if absent.
	concurrent int
	// rtt is the request's round-trip time; 0 means measured from the
	// slot's send time.
	rtt time.Duration
}

// okOutcome is a response received; concurrent is -1 without the header.
func okOutcome(concurrent int, rtt time.Duration) outcome {
	return outcome{kind: outcomeOK, concurrent: concurrent, rtt: rtt}
}

// throttledOutcome is a 429 code 20429; concurrent is -1 without the header.
func throttledOutcome(concurrent int) outcome {
	return outcome{kind: outcomeThrottled, concurrent: concurrent}
}

// failedOutcome is a failure with no concurrency signal.
func failedOutcome() outcome { return outcome{kind: outcomeFailed, concurrent: -1} }

// concurrentRequests parses Twilio-Concurrent-Requests; -1 if absent or
// invalid.
func concurrentRequests(h http.Header) int {
	v := strings.Trim(strings.TrimSpace(h.Get("Twilio-Concurrent-Requests")), `"`)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// acquire waits for a slot under the current limit. Waiters of higher prio
// (prioRetry > prioChain > prioNextPage > prioFirstPage) are served first, in arrival
// order within a priority. It returns ctx.Err() if ctx ends first; a slot
// granted at that moment is given back. The caller sends the request at once
// and reports its outcome with done.
func (l *limiter) acquire(ctx context.Context, prio int) (*slot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := l.enqueue(prio)
	if s.ready == nil {
		return s, nil
	}
	select {
	case <-s.ready:
		return s, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	switch s.state {
	case slotWaiting:
		l.queues[s.prio].remove(s)
		l.waiting--
	case slotGranted: // granted as ctx ended: give it back unused
		s.state = slotDone
		l.inflight--
		l.dispatch()
	}
	l.mu.Unlock()
	return nil, ctx.Err()
}

// enqueue grants a slot at once if one is free and nobody waits; otherwise
// it queues the slot, whose ready channel is closed when it is granted.
func (l *limiter) enqueue(prio int) *slot {
	s := &slot{l: l, prio: min(max(prio, 0), numPrio-1)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.waiting == 0 && l.inflight < l.capacity() {
		l.grant(s)
		return s
	}
	s.ready = make(chan struct{})
	l.queues[s.prio].push(s)
	l.waiting++
	l.fullSeq = l.seq
	return s
}

func (l *limiter) grant(s *slot) {
	l.seq++
	l.inflight++
	s.seq, s.sent, s.ours, s.state = l.seq, l.clock(), l.inflight, slotGranted
	if l.inflight >= l.capacity() {
		l.fullSeq = l.seq
	}
}

// dispatch grants waiting slots while there is room, highest priority first.
func (l *limiter) dispatch() {
	for l.waiting > 0 && l.inflight < l.capacity() {
		for p := numPrio - 1; p >= 0; p-- {
			if s := l.queues[p].pop(); s != nil {
				l.waiting--
				l.grant(s)
				close(s.ready)
				break
			}
		}
	}
}

// done releases the slot and feeds the outcome to the limiter. Calls after
// the first are ignored.
func (s *slot) done(o outcome) {
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.state != slotGranted {
		return
	}
	s.state = slotDone
	l.inflight--
	switch o.kind {
	case outcomeOK:
		l.onSuccess(s, o)
	case outcomeThrottled:
		l.onThrottle(s, o)
	}
	l.dispatch()
}

func (l *limiter) onSuccess(s *slot, o outcome) {
	l.streak = 0
	now := l.clock()
	rtt := o.rtt
	if rtt <= 0 {
		rtt = now.Sub(s.sent)
	}
	if rtt > 0 {
		if l.srtt == 0 {
			l.srtt = rtt
		} else {
			l.srtt += (rtt - l.srtt) / 8
		}
	}
	if h := o.concurrent; h >= 0 {
		ours := max(s.ours, l.inflight+1) // see the type's comment
		win := l.othersWindow()
		l.others.add(now, h-ours, win)
		l.okPeak.add(now, h, peakWindows*win)
		if l.acct > 0 && float64(h) > l.acct {
			l.acct = float64(h) // the account has held h requests
		}
	}
	if s.seq < l.cutSeq {
		return // sent under the limit before the last cut
	}
	l.okSinceCut = true
	if s.seq > l.fullSeq {
		return // the limiter has not been full since: the limit held nobody back
	}
	plateau, capped := l.plateau()
	switch {
	case l.slowStart || (capped && l.cwnd < plateau):
		l.cwnd = math.Min(l.cwnd+1, plateau)
	case plateau < float64(l.max): // probe
		before := math.Floor(l.acct)
		l.acct += 1 / l.probeEvery
		if math.Floor(l.acct) > before {
			l.probes++
		}
		l.cwnd = math.Max(l.cwnd, plateau+1/l.probeEvery)
	}
	l.cwnd = math.Min(l.cwnd, float64(l.max))
}

func (l *limiter) onThrottle(s *slot, o outcome) {
	l.throttled++
	if s.ours <= 1 {
		l.streak++ // nothing else of ours was in flight: others hold the account
	}
	if s.seq < l.cutSeq {
		return // same round trip as the last cut
	}
	l.cuts++
	t := s.ours - 1 // our requests in flight the account had room for
	h := o.concurrent
	if h < 0 {
		h = s.ours + l.others.value() // what the header would have said
	}
	// Full by the header, or refused again: the header's total is the
	// account's limit. A lone throttle while the header shows room may be
	// noise: it only cuts.
	if h >= int(l.acct)-1 || !l.okSinceCut {
		l.acct = float64(max(1, h-1, l.okPeak.value()))
	}
	l.others.raise(l.clock(), int(l.acct)-t) // plateau <= t
	target := float64(t)
	if !l.okSinceCut {
		target *= l.beta
		l.backoffs++
	}
	l.cwnd = math.Max(1, math.Min(l.cwnd, target))
	l.slowStart = false
	l.okSinceCut = false
	l.cutSeq = l.seq + 1
}

// plateau is acct - others, and whether it applies (acct is known).
func (l *limiter) plateau() (float64, bool) {
	if l.acct <= 0 {
		return math.Inf(1), false
	}
	return l.acct - float64(l.others.value()), true
}

// capacity is the current limit: min(cwnd, plateau) in [1, max].
func (l *limiter) capacity() int {
	lim := l.cwnd
	if p, ok := l.plateau(); ok {
		lim = math.Min(lim, p)
	}
	return min(max(int(lim), 1), l.max)
}

func (l *limiter) othersWindow() time.Duration {
	if l.srtt <= 0 {
		return othersWindowDefault
	}
	return max(4*l.srtt, time.Millisecond)
}

// throttlePause is how long the caller waits before retrying a throttled
// request: 0 unless throttles came with nothing else of ours in flight,
// then a jittered pause in [d/2, d], d = 50 ms doubling with each such
// throttle up to 1 s, until a success.
func (l *limiter) throttlePause() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.streak == 0 {
		return 0
	}
	d := throttlePauseBase
	for i := 1; i < l.streak && d < throttlePauseMax; i++ {
		d *= 2
	}
	d = min(d, throttlePauseMax)
	return d/2 + time.Duration(l.randN(int64(d/2)+1))
}

// limiterStats is a snapshot for progress display and logs.
type limiterStats struct {
	Limit        int           // requests allowed in flight now
	InFlight     int           // requests in flight
	Waiting      int           // callers waiting for a slot
	Throttled    int64         // 429 code 20429 responses seen
	Cuts         int64         // limit decreases (at most one per round trip)
	Backoffs     int64         // cuts that were multiplicative
	Probes       int64         // account estimate raised by probing
	AccountLimit int           // estimated account limit; 0 until the first throttle
	Others       int           // other applications' requests in flight (estimate)
	SlowStart    bool          // no throttle seen yet
	SRTT         time.Duration // smoothed round-trip time of successes
}

func (l *limiter) snapshot() limiterStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return limiterStats{
		Limit:        l.capacity(),
		InFlight:     l.inflight,
		Waiting:      l.waiting,
		Throttled:    l.throttled,
		Cuts:         l.cuts,
		Backoffs:     l.backoffs,
		Probes:       l.probes,
		AccountLimit: int(l.acct),
		Others:       max(0, l.others.value()),
		SlowStart:    l.slowStart,
		SRTT:         l.srtt,
	}
}

// maxWindow is the maximum of samples over the current and the previous
// window.
type maxWindow struct {
	cur, prev int
	start     time.Time
	set       bool
}

func (w *maxWindow) add(now time.Time, v int, win time.Duration) {
	switch el := now.Sub(w.start); {
	case !w.set || el >= 2*win:
		w.cur, w.prev, w.start, w.set = v, v, now, true
	case el >= win:
		w.prev, w.cur, w.start = w.cur, v, now
	default:
		w.cur = max(w.cur, v)
	}
}

// raise makes the value at least v until the window moves on.
func (w *maxWindow) raise(now time.Time, v int) {
	if !w.set {
		w.cur, w.prev, w.start, w.set = v, v, now, true
		return
	}
	w.cur = max(w.cur, v)
}

func (w *maxWindow) value() int {
	if !w.set {
		return 0
	}
	return max(w.cur, w.prev)
}

// slotQueue is a FIFO of waiting slots.
type slotQueue struct{ head, tail *slot }

func (q *slotQueue) push(s *slot) {
	s.prev, s.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = s
	} else {
		q.head = s
	}
	q.tail = s
}

func (q *slotQueue) pop() *slot {
	s := q.head
	if s != nil {
		q.remove(s)
	}
	return s
}

func (q *slotQueue) remove(s *slot) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		q.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		q.tail = s.prev
	}
	s.prev, s.next = nil, nil
}
