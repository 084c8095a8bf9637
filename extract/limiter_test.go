package extract

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// limiterClock is a settable clock for the limiter.
type limiterClock struct {
	mu sync.Mutex
	t  time.Time
}

func newLimiterClock() *limiterClock { return &limiterClock{t: time.Unix(1e9, 0)} }

func (c *limiterClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *limiterClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// take acquires a slot that must be free now.
func takeSlot(t *testing.T, l *limiter, prio int) *slot {
	t.Helper()
	if st := l.snapshot(); st.InFlight >= st.Limit || st.Waiting > 0 {
		t.Fatalf("no free slot: %+v", st)
	}
	s, err := l.acquire(context.Background(), prio)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fill acquires slots until the limit is reached.
func fillSlots(t *testing.T, l *limiter) []*slot {
	t.Helper()
	var slots []*slot
	for st := l.snapshot(); st.InFlight < st.Limit; st = l.snapshot() {
		slots = append(slots, takeSlot(t, l, prioNextPage))
	}
	return slots
}

// round is one round trip against an account of limit c of which others
// hold k: the limiter is filled, time passes, and every request is answered
// in send order, 429 (its header counting itself) beyond c.
func roundTrip(t *testing.T, l *limiter, clk *limiterClock, c, k int) {
	t.Helper()
	slots := fillSlots(t, l)
	clk.advance(100 * time.Millisecond)
	for _, s := range slots {
		if h := s.ours + k; h > c {
			s.done(throttledOutcome(h))
		} else {
			s.done(okOutcome(h, 0))
		}
	}
}

func wantLimit(t *testing.T, l *limiter, want int) limiterStats {
	t.Helper()
	st := l.snapshot()
	if st.Limit != want {
		t.Fatalf("limit %d, want %d (%+v)", st.Limit, want, st)
	}
	return st
}

func TestLimiterSlowStart(t *testing.T) {
	clk := newLimiterClock()
	l := newLimiter(100, clk.now)
	wantLimit(t, l, defaultInitialLimit)
	for _, want := range []int{8, 16, 32, 64} {
		roundTrip(t, l, clk, 1000, 0)
		if st := wantLimit(t, l, want); !st.SlowStart || st.AccountLimit != 0 {
			t.Fatalf("after a round without throttles: %+v", st)
		}
	}
	if st := l.snapshot(); st.SRTT != 100*time.Millisecond {
		t.Errorf("srtt %v, want 100ms", st.SRTT)
	}
}

func TestLimiterCeiling(t *testing.T) {
	clk := newLimiterClock()
	l := newLimiter(6, clk.now)
	for range 5 {
		roundTrip(t, l, clk, 1000, 0)
		wantLimit(t, l, 6)
	}
	wantLimit(t, newLimiter(6, clk.now, withInitialLimit(50)), 6)
	wantLimit(t, newLimiter(0, clk.now), 1)
}

// A burst of 429s in one round trip cuts once; a 429 of a request sent after
// the cut cuts again.
func TestLimiterOneCutPerRoundTrip(t *testing.T) {
	clk := newLimiterClock()
	l := newLimiter(100, clk.now, withInitialLimit(16))
	slots := fillSlots(t, l)
	for i := len(slots) - 1; i >= 0; i-- { // the last sent answers first
		slots[i].done(throttledOutcome(-1))
	}
	st := wantLimit(t, l, 15)
	if st.Cuts != 1 || st.Throttled != 16 || st.SlowStart {
		t.Fatalf("after a burst of 16 429s: %+v", st)
	}

	slots = fillSlots(t, l)
	for _, s := range slots[:14] {
		s.done(okOutcome(-1, 0))
	}
	slots[14].done(throttledOutcome(-1))
	if st := wantLimit(t, l, 14); st.Cuts != 2 || st.Backoffs != 0 {
		t.Fatalf("after a 429 in the next round trip: %+v", st)
	}
}

// A request sent under the level of the last cut refused too, before any of
// them succeeded, cuts multiplicatively.
func TestLimiterBackoffWhenRefusedAgain(t *testing.T) {
	clk := newLimiterClock()
	l := newLimiter(100, clk.now, withInitialLimit(32))
	slots := fillSlots(t, l)
	slots[31].done(throttledOutcome(-1))
	for _, s := range slots[:31] {
		s.done(failedOutcome())
	}
	wantLimit(t, l, 31)
	slots = fillSlots(t, l)
	slots[30].done(throttledOutcome(-1)) // t = 30
	if st := wantLimit(t, l, 21); st.Backoffs != 1 {
		t.Fatalf("want one multiplicative cut to 0.7*30: %+v", st)
	}
	for _, s := range slots[:30] {
		s.done(failedOutcome())
	}
}

// After a cut the limit stays at the level found and probes one request
// more after 400 successes there; a refused probe is undone.
func TestLimiterProbesAdditively(t *testing.T) {
	clk := newLimiterClock()
	l := newLimiter(100, clk.now)
	roundTrip(t, l, clk, 4, 0) // 4 ok, grows to 8
	roundTrip(t, l, clk, 4, 0) // 5th refused: back to 4
	st := wantLimit(t, l, 4)
	if st.AccountLimit != 4 || st.Cuts != 1 {
		t.Fatalf("after the first throttle: %+v", st)
	}
	successes := 0
	for l.snapshot().Limit == 4 && successes < 1000 {
		roundTrip(t, l, clk, 4, 0)
		successes += 4
	}
	if st := wantLimit(t, l, 5); st.Probes != 1 || successes < 396 || successes > 404 {
		t.Fatalf("want one probe after 400 successes, got it after %d: %+v", successes, st)
	}
	roundTrip(t, l, clk, 4, 0) // the fifth is refused
	if st := wantLimit(t, l, 4); st.Cuts != 2 || st.Backoffs != 0 || st.AccountLimit != 4 {
		t.Fatalf("after a refused probe: %+v", st)
	}
}

// Whether a 429's header counts the refused request or not, the account's
// limit is estimated right.
func TestLimiterHeaderSemantics(t *testing.T) {
	for _, countsSelf := range []bool{true, false} {
		t.Run(fmt.Sprint("countsSelf=", countsSelf), func(t *testing.T) {
			clk := newLimiterClock()
			l := newLimiter(100, clk.now, withInitialLimit(12))
			slots := fillSlots(t, l)
			for _, s := range slots[:10] {
				s.done(okOutcome(s.ours, 0))
			}
			h := 11 // 10 of ours at the API, 11th refused
			if !countsSelf {
				h = 10
			}
			slots[10].done(throttledOutcome(h))
			slots[11].done(throttledOutcome(h))
			if st := wantLimit(t, l, 10); st.AccountLimit != 10 || st.Others != 0 {
				t.Fatalf("%+v", st)
			}
		})
	}
}

// The header caps the limit at the account's limit less the other
// applications' requests, without a throttle, and gives the room back when
// they are gone, after the others window.
func TestLimiterHeaderCap(t *testing.T) {
	clk := newLimiterClock()
	l := newLimiter(100, clk.now)
	for range 4 {
		roundTrip(t, l, clk, 16, 0)
	}
	found := wantLimit(t, l, 16)
	if found.AccountLimit != 16 || found.Cuts != 1 {
		t.Fatalf("account limit not found: %+v", found)
	}

	// Another application now holds 12: a response says 13 with one of ours.
	s := takeSlot(t, l, prioNextPage)
	clk.advance(100 * time.Millisecond)
	s.done(okOutcome(13, 0))
	if st := wantLimit(t, l, 4); st.Others != 12 || st.Cuts != 1 || st.Throttled != found.Throttled {
		t.Fatalf("header cap: %+v", st)
	}
	roundTrip(t, l, clk, 16, 12)
	st := wantLimit(t, l, 4)

	// It leaves: a dip is not taken at once...
	s = takeSlot(t, l, prioNextPage)
	clk.advance(100 * time.Millisecond)
	s.done(okOutcome(1, 0))
	wantLimit(t, l, 4)
	// ...but once the windows have passed, the room is ours again.
	clk.advance(8 * st.SRTT)
	s = takeSlot(t, l, prioNextPage)
	clk.advance(100 * time.Millisecond)
	s.done(okOutcome(1, 0))
	if st := wantLimit(t, l, 16); st.Others != 0 || st.Throttled != found.Throttled {
		t.Fatalf("room given back: %+v", st)
	}
}

// Without the header a throttle still tells the level: the limit stays just
// below the account's room.
func TestLimiterWithoutHeader(t *testing.T) {
	clk := newLimiterClock()
	l := newLimiter(100, clk.now)
	for range 5 {
		slots := fillSlots(t, l)
		for _, s := range slots {
			if s.ours+3 > 12 { // others hold 3 of 12
				s.done(throttledOutcome(-1))
			} else {
				s.done(okOutcome(-1, 0))
			}
		}
	}
	if st := wantLimit(t, l, 9); st.Cuts != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestLimiterFailuresAndIdleDoNotChangeIt(t *testing.T) {
	clk := newLimiterClock()
	l := newLimiter(100, clk.now)
	roundTrip(t, l, clk, 100, 0)
	roundTrip(t, l, clk, 4, 0) // of 8, 4 refused: limit 4
	before := wantLimit(t, l, 4)
	for range 20 {
		for _, s := range fillSlots(t, l) {
			s.done(failedOutcome())
		}
	}
	// One request at a time: the limit is not what holds the caller back.
	for range 500 {
		takeSlot(t, l, prioFirstPage).done(okOutcome(1, 0))
	}
	after := wantLimit(t, l, 4)
	if after.Cuts != before.Cuts || after.Probes != 0 || after.InFlight != 0 {
		t.Fatalf("before %+v, after %+v", before, after)
	}
}

func TestLimiterDoneTwice(t *testing.T) {
	l := newLimiter(100, nil)
	s := takeSlot(t, l, prioRetry)
	s.done(throttledOutcome(-1))
	s.done(throttledOutcome(-1))
	s.done(okOutcome(1, 0))
	if st := l.snapshot(); st.InFlight != 0 || st.Throttled != 1 || st.Cuts != 1 {
		t.Fatalf("%+v", st)
	}
}

// At limit 1 with every request refused, the limit stays 1 and the caller
// is told to pause, 50 ms doubling to 1 s, until a success.
func TestLimiterFloorAndPause(t *testing.T) {
	clk := newLimiterClock()
	l := newLimiter(100, clk.now, withRand(func(n int64) int64 { return n - 1 })) // longest pause
	if d := l.throttlePause(); d != 0 {
		t.Fatalf("pause %v before any throttle", d)
	}
	want := []time.Duration{50, 100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		takeSlot(t, l, prioRetry).done(throttledOutcome(40))
		wantLimit(t, l, 1)
		if d := l.throttlePause(); d != w*time.Millisecond {
			t.Fatalf("pause %d: %v, want %v", i, d, w*time.Millisecond)
		}
	}
	l.randN = func(int64) int64 { return 0 } // shortest
	if d := l.throttlePause(); d != 500*time.Millisecond {
		t.Fatalf("shortest pause %v, want 500ms", d)
	}
	takeSlot(t, l, prioRetry).done(okOutcome(40, 0))
	if d := l.throttlePause(); d != 0 {
		t.Fatalf("pause %v after a success", d)
	}
	// With others of ours in flight a throttle waits for their slots, not a pause.
	l = newLimiter(100, clk.now)
	slots := fillSlots(t, l)
	slots[3].done(throttledOutcome(-1))
	if d := l.throttlePause(); d != 0 {
		t.Fatalf("pause %v with 3 requests in flight", d)
	}
}

func TestLimiterPriorities(t *testing.T) {
	l := newLimiter(1, nil)
	held := takeSlot(t, l, prioFirstPage)
	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	waiters := []struct {
		name string
		prio int
	}{
		{"first-a", prioFirstPage}, {"next-a", prioNextPage}, {"retry-a", prioRetry},
		{"next-b", prioNextPage}, {"first-b", prioFirstPage}, {"retry-b", prioRetry},
		{"odd-high", 7}, {"odd-low", -3},
	}
	for i, w := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := l.acquire(context.Background(), w.prio)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, w.name)
			mu.Unlock()
			s.done(okOutcome(-1, 0))
		}()
		for l.snapshot().Waiting != i+1 { // queue in this order
			time.Sleep(time.Millisecond)
		}
	}
	held.done(okOutcome(-1, 0))
	wg.Wait()
	got := strings.Join(order, " ")
	if want := "retry-a retry-b odd-high next-a next-b first-a first-b odd-low"; got != want {
		t.Fatalf("served %s, want %s", got, want)
	}
}

func TestLimiterCancelWhileWaiting(t *testing.T) {
	l := newLimiter(1, nil)
	held := takeSlot(t, l, prioNextPage)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := l.acquire(ctx, prioRetry)
		errc <- err
	}()
	for l.snapshot().Waiting != 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire: %v, want context.Canceled", err)
	}
	if st := l.snapshot(); st.Waiting != 0 || st.InFlight != 1 {
		t.Fatalf("after cancel: %+v", st)
	}
	held.done(failedOutcome())
	takeSlot(t, l, prioFirstPage).done(failedOutcome())
	if _, err := l.acquire(ctx, prioRetry); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire with a done context: %v", err)
	}
	if st := l.snapshot(); st.InFlight != 0 || st.Waiting != 0 {
		t.Fatalf("at the end: %+v", st)
	}
}

// Cancellations racing with grants lose no slot and leave nothing waiting.
func TestLimiterCancelRace(t *testing.T) {
	l := newLimiter(3, nil)
	var wg sync.WaitGroup
	var served atomic.Int64
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 200 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(200))*time.Microsecond)
				s, err := l.acquire(ctx, rng.IntN(numPrio))
				if err == nil {
					if st := l.snapshot(); st.InFlight > st.Limit || st.InFlight > 3 {
						t.Errorf("over the limit: %+v", st)
					}
					served.Add(1)
					s.done(okOutcome(-1, 0))
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	if st := l.snapshot(); st.InFlight != 0 || st.Waiting != 0 {
		t.Fatalf("slots lost: %+v", st)
	}
	if served.Load() == 0 {
		t.Fatal("nothing served")
	}
	takeSlot(t, l, prioFirstPage).done(okOutcome(-1, 0))
}

func TestConcurrentRequestsHeader(t *testing.T) {
	for v, want := range map[string]int{"5": 5, " 12 ": 12, `"7"`: 7, "0": 0, "": -1, "many": -1, "-2": -1} {
		h := http.Header{}
		if v != "" {
			h.Set("Twilio-Concurrent-Requests", v)
		}
		if got := concurrentRequests(h); got != want {
			t.Errorf("%q: %d, want %d", v, got, want)
		}
	}
}

// TestLimiterSimulation drives the limiter with simulated workers against a
// simulated account (discrete events on a virtual clock: deterministic and
// fast) and checks the project's targets: completion within 1.15x of
// R*L/C and under 1% of requests answered 429; with another application
// holding K slots, within 1.3x of R*L/(C-K) and under 2%. With -v it also
// logs other scenarios, and a plain Reno window for comparison.
func TestLimiterSimulation(t *testing.T) {
	base := limSimConfig{
		L: 100 * time.Millisecond, jitter: 0.3, d: 2 * time.Millisecond,
		N: 128, R: 20000, otherThink: time.Millisecond, seed: 1,
	}
	modes := []struct {
		name string
		mode simHeader
	}{{"header", headerCountsSelf}, {"header-excl", headerExcludesSelf}, {"no-header", headerNone}}
	targets := []struct {
		C, K         int
		ratio, share float64
	}{{4, 0, 1.15, 0.01}, {16, 0, 1.15, 0.01}, {64, 0, 1.15, 0.01}, {16, 8, 1.3, 0.02}}
	for _, tg := range targets {
		for _, m := range modes {
			cfg := base
			cfg.C, cfg.K, cfg.header = tg.C, tg.K, m.mode
			r := runLimSim(cfg)
			t.Logf("C=%-3d K=%-2d %-11s %v", tg.C, tg.K, m.name, r)
			if r.ratio() > tg.ratio || r.share() >= tg.share {
				t.Errorf("C=%d K=%d %s: %.3fx the bound (max %.2f), %.2f%% 429s (max %.0f%%)",
					tg.C, tg.K, m.name, r.ratio(), tg.ratio, 100*r.share(), 100*tg.share)
			}
		}
	}

	if !testing.Verbose() {
		return // the comparisons below are only logged
	}
	sec := time.Second
	for _, sc := range []struct {
		name string
		mod  func(*limSimConfig)
	}{
		{"C=16 K=8 from 20s to 60s", func(c *limSimConfig) { c.C, c.K, c.otherOn, c.otherOff = 16, 8, 20*sec, 60*sec }},
		{"C=64 K=48 from 5s", func(c *limSimConfig) { c.C, c.K, c.otherOn = 64, 48, 5*sec }},
		{"C=16 K=16 from 20s to 40s", func(c *limSimConfig) { c.C, c.K, c.otherOn, c.otherOff = 16, 16, 20*sec, 40*sec }},
		{"C=64 lowered to 16 at 20s", func(c *limSimConfig) { c.C, c.limitTo, c.limitAt = 64, 16, 20*sec }},
		{"  same, beta=0.5", func(c *limSimConfig) {
			c.C, c.limitTo, c.limitAt, c.opts = 64, 16, 20*sec, []limiterOption{withBeta(0.5)}
		}},
		{"  same, no multiplicative cut", func(c *limSimConfig) {
			c.C, c.limitTo, c.limitAt, c.opts = 64, 16, 20*sec, []limiterOption{withBeta(1)}
		}},
		{"C=16 raised to 32 at 20s", func(c *limSimConfig) { c.C, c.limitTo, c.limitAt = 16, 32, 20*sec }},
		{"  same, probe every 100", func(c *limSimConfig) {
			c.C, c.limitTo, c.limitAt, c.opts = 16, 32, 20*sec, []limiterOption{withProbeEvery(100)}
		}},
		{"C=64, 0.2% stray 429s", func(c *limSimConfig) { c.C, c.spurious = 64, 0.002 }},
		{"C=64, header as answered", func(c *limSimConfig) { c.C, c.headerLate = 64, true }},
		{"C=16 K=8, header as answered", func(c *limSimConfig) { c.C, c.K, c.headerLate = 16, 8, true }},
		{"C=64, 25 ms each way", func(c *limSimConfig) { c.C, c.d = 64, 25*time.Millisecond }},
		{"C=16 K=8, 2-10 ms each way", func(c *limSimConfig) { c.C, c.K, c.d, c.dJitter = 16, 8, 6*time.Millisecond, 0.67 }},
		{"C=64, 2-10 ms each way", func(c *limSimConfig) { c.C, c.d, c.dJitter = 64, 6*time.Millisecond, 0.67 }},
		{"C=200 (above --concurrency)", func(c *limSimConfig) { c.C = 200 }},
		{"C=64, 40 workers", func(c *limSimConfig) { c.C, c.N = 64, 40 }},
		{"C=1", func(c *limSimConfig) { c.C, c.R = 1, 2000 }},
	} {
		for _, m := range []int{0, 2} {
			cfg := base
			cfg.header = modes[m].mode
			sc.mod(&cfg)
			t.Logf("%-30s %-9s %v", sc.name, modes[m].name, runLimSim(cfg))
		}
	}
	for _, tg := range targets {
		for _, beta := range []float64{0.5, 0.7} {
			cfg := base
			cfg.C, cfg.K, cfg.reno, cfg.header = tg.C, tg.K, beta, headerNone
			t.Logf("plain Reno beta=%.1f C=%-3d K=%-2d %v", beta, tg.C, tg.K, runLimSim(cfg))
		}
	}
}

// BenchmarkLimiterRealTime runs the limiter with goroutines against a
// simulated account in real time (5 ms per request) and reports completion
// time against the bound R*L/(C-K) ("x-bound"), against the time our
// requests actually held the account's slots, which takes out timer and
// scheduler delays ("x-held"), and the share of requests answered 429.
// Figures only: wall-clock time is not asserted on.
func BenchmarkLimiterRealTime(b *testing.B) {
	const lat = 5 * time.Millisecond
	for _, sc := range []struct{ C, K int }{{4, 0}, {16, 0}, {64, 0}, {16, 8}} {
		b.Run(fmt.Sprintf("C=%d/K=%d", sc.C, sc.K), func(b *testing.B) {
			slots := sc.C - sc.K
			r := 250 * slots
			bound := time.Duration(r) * lat / time.Duration(slots)
			var ratio, held, share float64
			for range b.N {
				elapsed, busy, attempts, throttled := runLimiterRealTime(sc.C, sc.K, r, lat)
				ratio += float64(elapsed) / float64(bound)
				held += float64(elapsed) / (float64(busy) / float64(slots))
				share += float64(throttled) / float64(attempts)
			}
			n := float64(b.N)
			b.ReportMetric(ratio/n, "x-bound")
			b.ReportMetric(held/n, "x-held")
			b.ReportMetric(100*share/n, "%429")
		})
	}
}

// runLimiterRealTime sends r requests through a limiter from 128 goroutines to an
// account of limit c where another application's k goroutines also send
// requests back to back.
func runLimiterRealTime(c, k, r int, lat time.Duration) (elapsed, held time.Duration, attempts, throttled int64) {
	var mu sync.Mutex
	inflight := 0
	var ourHeld atomic.Int64              // time our requests held a slot
	call := func(ours bool) (int, bool) { // header, throttled
		mu.Lock()
		if inflight >= c {
			h := inflight + 1
			mu.Unlock()
			return h, true
		}
		inflight++
		h := inflight
		mu.Unlock()
		start := time.Now()
		time.Sleep(lat)
		if ours {
			ourHeld.Add(int64(time.Since(start)))
		}
		mu.Lock()
		inflight--
		mu.Unlock()
		return h, false
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var others sync.WaitGroup
	for range k {
		others.Add(1)
		go func() {
			defer others.Done()
			for ctx.Err() == nil {
				if _, refused := call(false); refused {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}

	l := newLimiter(100, nil)
	var left, tries, refused atomic.Int64
	left.Store(int64(r))
	start := time.Now()
	var wg sync.WaitGroup
	for range 128 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				prio := prioNextPage
				for {
					s, err := l.acquire(ctx, prio)
					if err != nil {
						return
					}
					tries.Add(1)
					h, throttled := call(true)
					if !throttled {
						s.done(okOutcome(h, 0))
						break
					}
					refused.Add(1)
					s.done(throttledOutcome(h))
					time.Sleep(l.throttlePause())
					prio = prioRetry
				}
			}
		}()
	}
	wg.Wait()
	elapsed = time.Since(start)
	cancel()
	others.Wait()
	return elapsed, time.Duration(ourHeld.Load()), tries.Load(), refused.Load()
}

// A discrete-event simulation of convsync's workers, the limiter and a
// Twilio account with a hard concurrency limit, on a virtual clock.

// simHeader is what the simulated API sends as Twilio-Concurrent-Requests.
type simHeader int

const (
	headerCountsSelf   simHeader = iota // a 429's header counts the rejected request
	headerExcludesSelf                  // a 429's header does not count it
	headerNone                          // no header
)

type limSimConfig struct {
	C          int           // account concurrency limit
	limitTo    int           // if > 0, the limit becomes limitTo at limitAt
	limitAt    time.Duration //
	L          time.Duration // mean time a request holds a slot at the server
	jitter     float64       // hold time uniform in L*[1-jitter, 1+jitter]
	d          time.Duration // one-way network delay
	dJitter    float64       // each way takes d*[1-dJitter, 1+dJitter]: requests overtake each other
	N, R       int           // our workers and requests
	max        int           // --concurrency
	K          int           // other application's workers (each holds one slot)
	otherOn    time.Duration // the other application runs in [otherOn, otherOff)
	otherOff   time.Duration // 0: until the end
	otherThink time.Duration // its pause between two requests
	header     simHeader
	headerLate bool // a success's header counts the account's requests as it answers, not as it admits
	opts       []limiterOption
	spurious   float64 // probability that the API answers 429 though it has room
	reno       float64 // if > 0, drive a plain Reno window with this factor instead
	seed       uint64
}

type limSimResult struct {
	elapsed, bound     time.Duration
	attempts, throttle int // our requests sent, and answered 429
	otherReqs, other   int // the other application's, and its 429s
	stats              limiterStats
}

func (r limSimResult) ratio() float64 { return float64(r.elapsed) / float64(r.bound) }
func (r limSimResult) share() float64 { return float64(r.throttle) / float64(r.attempts) }
func (r limSimResult) otherShare() float64 {
	if r.otherReqs == 0 {
		return 0
	}
	return float64(r.other) / float64(r.otherReqs)
}

func (r limSimResult) String() string {
	return fmt.Sprintf("time %6.3fx bound  429s %5.2f%% (%d/%d)  other's 429s %5.2f%%  limit %d acct %d others %d cuts %d backoffs %d probes %d",
		r.ratio(), 100*r.share(), r.throttle, r.attempts, 100*r.otherShare(),
		r.stats.Limit, r.stats.AccountLimit, r.stats.Others, r.stats.Cuts, r.stats.Backoffs, r.stats.Probes)
}

type limSimEvent struct {
	at  time.Duration
	seq int
	fn  func()
}

type limSimEvents []limSimEvent

func (q limSimEvents) Len() int { return len(q) }
func (q limSimEvents) Less(i, j int) bool {
	return q[i].at < q[j].at || (q[i].at == q[j].at && q[i].seq < q[j].seq)
}
func (q limSimEvents) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *limSimEvents) Push(x any)   { *q = append(*q, x.(limSimEvent)) }
func (q *limSimEvents) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type limSim struct {
	cfg    limSimConfig
	now    time.Duration
	events limSimEvents
	seq    int
	rng    *rand.Rand
	epoch  time.Time

	lim     limSimDriver
	left    int // requests not yet started
	done    int // requests answered with success
	server  int // requests holding a slot at the server
	limit   int // current account limit
	res     limSimResult
	stopped bool
}

func (s *limSim) at(d time.Duration, fn func()) {
	s.seq++
	heap.Push(&s.events, limSimEvent{at: s.now + d, seq: s.seq, fn: fn})
}

func (s *limSim) clock() time.Time { return s.epoch.Add(s.now) }

// hold is a request's time at the server.
func (s *limSim) hold() time.Duration {
	j := s.cfg.jitter * (2*s.rng.Float64() - 1)
	return time.Duration(float64(s.cfg.L) * (1 + j))
}

// delay is one way through the network.
func (s *limSim) delay() time.Duration {
	j := s.cfg.dJitter * (2*s.rng.Float64() - 1)
	return time.Duration(float64(s.cfg.d) * (1 + j))
}

// arrive admits a request at the server or rejects it; respond is called
// when the response reaches the client.
func (s *limSim) arrive(respond func(throttled bool, header int)) {
	if s.server >= s.limit || s.rng.Float64() < s.cfg.spurious {
		h := s.server + 1
		if s.cfg.header == headerExcludesSelf {
			h = s.server
		}
		s.at(s.delay(), func() { respond(true, s.header(h)) })
		return
	}
	s.server++
	h := s.header(s.server)
	s.at(s.hold(), func() {
		if s.cfg.headerLate {
			h = s.header(s.server)
		}
		s.server--
		s.at(s.delay(), func() { respond(false, h) })
	})
}

func (s *limSim) header(h int) int {
	if s.cfg.header == headerNone {
		return -1
	}
	return h
}

// worker runs our requests one after another.
func (s *limSim) worker() {
	if s.left == 0 {
		return
	}
	s.left--
	s.acquire(prioNextPage)
}

func (s *limSim) acquire(prio int) {
	s.lim.acquire(prio, func(tok any) {
		s.res.attempts++
		s.at(s.delay(), func() {
			s.arrive(func(throttled bool, h int) {
				if throttled {
					s.res.throttle++
					pause := s.lim.release(tok, throttledOutcome(h))
					s.at(pause, func() { s.acquire(prioRetry) })
					return
				}
				s.lim.release(tok, okOutcome(h, 0))
				s.done++
				if s.done == s.cfg.R {
					s.res.elapsed = s.now
					s.stopped = true
				}
				s.worker()
			})
		})
	})
}

// other runs one worker of the other application: a request, a think time,
// the next; a 429 is retried after a jittered 50-150 ms.
func (s *limSim) other() {
	if s.cfg.otherOff > 0 && s.now >= s.cfg.otherOff {
		return
	}
	s.res.otherReqs++
	s.at(s.delay(), func() {
		s.arrive(func(throttled bool, _ int) {
			if throttled {
				s.res.other++
				s.at(time.Duration((0.5+s.rng.Float64())*float64(100*time.Millisecond)), s.other)
				return
			}
			s.at(s.cfg.otherThink, s.other)
		})
	})
}

func runLimSim(cfg limSimConfig) limSimResult {
	if cfg.max == 0 {
		cfg.max = 100
	}
	s := &limSim{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.seed, 7)), epoch: time.Unix(1e9, 0), left: cfg.R, limit: cfg.C}
	if cfg.reno > 0 {
		s.lim = &renoSim{cwnd: defaultInitialLimit, beta: cfg.reno, max: cfg.max, slowStart: true}
	} else {
		opts := append([]limiterOption{withRand(s.rng.Int64N)}, cfg.opts...)
		s.lim = &limiterSim{l: newLimiter(cfg.max, s.clock, opts...)}
	}
	for range cfg.N {
		s.at(0, s.worker)
	}
	for range cfg.K {
		s.at(cfg.otherOn+time.Duration(s.rng.Int64N(int64(cfg.L))), s.other)
	}
	if cfg.limitTo > 0 {
		s.at(cfg.limitAt, func() { s.limit = cfg.limitTo })
	}
	for n := 0; s.events.Len() > 0 && !s.stopped; n++ {
		if n > 100*cfg.R+1e6 {
			panic("simulation does not finish")
		}
		e := heap.Pop(&s.events).(limSimEvent)
		s.now = e.at
		e.fn()
	}
	s.res.bound = s.bound()
	s.res.stats = s.lim.stats()
	return s.res
}

// bound is the time R requests take at L each when every slot the account
// leaves us is busy: its limit less the other application's workers, capped
// by --concurrency and our workers, phase by phase as those change.
func (s *limSim) bound() time.Duration {
	cfg := s.cfg
	slots := func(t time.Duration) float64 {
		c := cfg.C
		if cfg.limitTo > 0 && t >= cfg.limitAt {
			c = cfg.limitTo
		}
		if t >= cfg.otherOn && (cfg.otherOff == 0 || t < cfg.otherOff) {
			c -= cfg.K
		}
		return float64(max(1, min(c, cfg.max, cfg.N)))
	}
	cuts := []time.Duration{cfg.otherOn, cfg.otherOff, cfg.limitAt}
	var t time.Duration
	left := float64(cfg.R) // requests
	for {
		next := time.Duration(math.MaxInt64)
		for _, c := range cuts {
			if c > t && c < next {
				next = c
			}
		}
		rate := slots(t) / float64(cfg.L) // requests per nanosecond
		if need := time.Duration(left / rate); next == math.MaxInt64 || t+need <= next {
			return t + need
		}
		left -= float64(next-t) * rate
		t = next
	}
}

// limSimDriver is what the simulated workers drive: the limiter itself, or a
// plain Reno window kept for comparison.
type limSimDriver interface {
	// acquire calls send when a slot is granted (maybe at once).
	acquire(prio int, send func(tok any))
	// release reports an outcome and returns the pause before a retry.
	release(tok any, o outcome) time.Duration
	stats() limiterStats
}

type limiterSim struct {
	l       *limiter
	pending []limSimPending
}

type limSimPending struct {
	s    *slot
	send func(any)
}

func (ls *limiterSim) acquire(prio int, send func(any)) {
	s := ls.l.enqueue(prio)
	if s.ready == nil {
		send(s)
		return
	}
	ls.pending = append(ls.pending, limSimPending{s, send})
}

func (ls *limiterSim) release(tok any, o outcome) time.Duration {
	tok.(*slot).done(o)
	// Send what done granted, in grant order.
	var granted []limSimPending
	keep := ls.pending[:0]
	for _, p := range ls.pending {
		select {
		case <-p.s.ready:
			granted = append(granted, p)
		default:
			keep = append(keep, p)
		}
	}
	ls.pending = keep
	for len(granted) > 0 {
		first := 0
		for i, p := range granted {
			if p.s.seq < granted[first].s.seq {
				first = i
			}
		}
		p := granted[first]
		granted = append(granted[:first], granted[first+1:]...)
		p.send(p.s)
	}
	if o.kind == outcomeThrottled {
		return ls.l.throttlePause()
	}
	return 0
}

func (ls *limiterSim) stats() limiterStats { return ls.l.snapshot() }

// renoSim is TCP Reno on the requests in flight: slow start, then 1/cwnd
// per success and cwnd*beta on a throttle, at most once per round trip. No
// header, no priorities (FIFO).
type renoSim struct {
	cwnd      float64
	beta      float64
	max       int
	slowStart bool
	inflight  int
	seq, cut  uint64
	queue     []func(any)
	throttled int64
	cuts      int64
}

type renoToken struct{ seq uint64 }

func (r *renoSim) capacity() int { return min(max(int(r.cwnd), 1), r.max) }

func (r *renoSim) acquire(_ int, send func(any)) {
	r.queue = append(r.queue, send)
	r.dispatch()
}

func (r *renoSim) dispatch() {
	for len(r.queue) > 0 && r.inflight < r.capacity() {
		send := r.queue[0]
		r.queue = r.queue[1:]
		r.seq++
		r.inflight++
		send(renoToken{r.seq})
	}
}

func (r *renoSim) release(tok any, o outcome) time.Duration {
	t := tok.(renoToken)
	r.inflight--
	switch {
	case o.kind == outcomeOK && t.seq >= r.cut && r.slowStart:
		r.cwnd++
	case o.kind == outcomeOK && t.seq >= r.cut:
		r.cwnd += 1 / r.cwnd
	case o.kind == outcomeThrottled:
		r.throttled++
		if t.seq >= r.cut {
			r.cuts++
			r.slowStart = false
			r.cwnd = max(1, r.cwnd*r.beta)
			r.cut = r.seq + 1
		}
	}
	r.cwnd = min(r.cwnd, float64(r.max))
	r.dispatch()
	return 0
}

func (r *renoSim) stats() limiterStats {
	return limiterStats{Limit: r.capacity(), InFlight: r.inflight, Throttled: r.throttled, Cuts: r.cuts}
}
