package extract

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMemoryHeld: the pages a walk handed out and the caller has not
// released count in Stats().MemoryHeld (decodedFactor times their
// bodies); releasing them, once or twice, gives it back.
func TestMemoryHeld(t *testing.T) {
	var sizes sync.Map // page number -> body size
	var self string
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(r.URL.Query().Get("Page"))
		next := ""
		if i < 2 {
			next = fmt.Sprintf("%s/v1/Services?Page=%d", self, i+1)
		}
		body := listBody("services", members(strings.Repeat("s", 100*(i+1)), 10*(i+1)), next)
		sizes.Store(i, len(body))
		writeJSON(w, 200, body)
	})
	self = e.srv.URL
	next, stop := iter.Pull2(e.c.Services(context.Background()))
	defer stop()
	var pages []PageOf
	var want int64
	for i := range 3 {
		pg, err, ok := next()
		if !ok || err != nil {
			t.Fatalf("page %d: %v, %v", i, err, ok)
		}
		size, _ := sizes.Load(i)
		if pg.Bytes != int64(size.(int)) {
			t.Errorf("page %d: Bytes = %d, the server sent %d", i, pg.Bytes, size)
		}
		pages = append(pages, pg)
		want += pg.Bytes * decodedFactor
		if held := e.c.Stats().MemoryHeld; held != want {
			t.Errorf("after page %d: held = %d, want %d", i, held, want)
		}
	}
	if _, _, ok := next(); ok {
		t.Fatal("a fourth page")
	}
	// Released in another order than received, one of them twice.
	for _, i := range []int{1, 1, 0, 2} {
		if pages[i].Items != nil {
			want -= pages[i].Bytes * decodedFactor
		}
		pages[i].Release()
		if pages[i].Items != nil {
			t.Errorf("page %d still has items after Release", i)
		}
		if held := e.c.Stats().MemoryHeld; held != want {
			t.Errorf("after releasing page %d: held = %d, want %d", i, held, want)
		}
	}
	if want != 0 {
		t.Fatalf("bookkeeping of the test: %d", want)
	}
	var none *Page
	none.Release() // a nil page is safe to release
	PageOf{}.Release()
}

// TestMemoryHeldAfterFailures: pages a walk refuses (untrustworthy,
// foreign next page) or decodes but does not hand out are released by the
// walk itself.
func TestMemoryHeldAfterFailures(t *testing.T) {
	var self string
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("Page") {
		case "":
			writeJSON(w, 200, listBody("services", members("a", 5), self+"/v1/Services?Page=1"))
		case "1":
			writeJSON(w, 200, listBody("services", members("b", 5), self+"/v1/Services?PageSize=100")) // a cycle
		}
	})
	self = e.srv.URL
	for pg, err := range e.c.Services(context.Background()) {
		if err != nil {
			if !errors.Is(err, ErrUntrusted) {
				t.Errorf("err = %v", err)
			}
			break
		}
		if held := e.c.Stats().MemoryHeld; held != pg.Bytes*decodedFactor {
			t.Errorf("held = %d with one page of %d bytes out", held, pg.Bytes)
		}
		pg.Release()
	}
	if held := e.c.Stats().MemoryHeld; held != 0 {
		t.Errorf("held = %d after the walk", held)
	}
}

// TestBudget exercises the bookkeeping that gates requests: while the
// pages out hold the soft budget, a walk waits, except the oldest walk
// holding pages, which can always go on.
func TestBudget(t *testing.T) {
	b := newBudget(100)
	ctx := context.Background()
	w1, w2, w3 := b.walk(), b.walk(), b.walk()
	if w1 == 0 || w1 == w2 || w2 == w3 {
		t.Fatalf("tickets %d, %d, %d", w1, w2, w3)
	}
	admitted := func(ticket uint64) bool {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		return b.admit(ctx, ticket) == nil
	}
	b.hold(w2, 60)
	b.hold(w3, 60)
	if b.Held() != 120 {
		t.Fatalf("held = %d", b.Held())
	}
	if admitted(w1) || admitted(w3) {
		t.Error("over budget, a walk that is not the oldest holder was admitted")
	}
	if !admitted(w2) {
		t.Error("the oldest walk holding pages was not admitted")
	}
	// A waiting walk goes on as soon as a release brings the pages under
	// the budget, and not before.
	done := make(chan error, 1)
	go func() { done <- b.admit(ctx, w3) }()
	select {
	case err := <-done:
		t.Fatalf("admitted over budget: %v", err)
	case <-time.After(30 * time.Millisecond):
	}
	b.release(w2, 10) // 110: still over
	select {
	case err := <-done:
		t.Fatalf("admitted over budget: %v", err)
	case <-time.After(30 * time.Millisecond):
	}
	b.release(w2, 50) // 60: w2 holds nothing, w3 is now the oldest holder
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("not admitted after the release")
	}
	if !admitted(w1) {
		t.Error("under budget, a walk was not admitted")
	}
	// The wait ends with the context.
	b.hold(w3, 100)
	cctx, cancel := context.WithCancelCause(ctx)
	go func() { time.Sleep(20 * time.Millisecond); cancel(errors.New("stop")) }()
	if err := b.admit(cctx, w1); err == nil || err.Error() != "stop" {
		t.Errorf("admit = %v, want the context's cause", err)
	}
	b.release(w3, 160)
	if b.Held() != 0 || len(b.walks) != 0 {
		t.Errorf("held = %d, walks = %v", b.Held(), b.walks)
	}
}

// TestBudgetGatesRequests: with the pages out over the budget, a new walk
// sends no request until they are released, while the walk holding them
// goes on.
func TestBudgetGatesRequests(t *testing.T) {
	const chA = "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"
	const chB = "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab2"
	var aCalls, bCalls atomic.Int32
	var self string
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, chB) {
			bCalls.Add(1)
			writeJSON(w, 200, listBody("participants", members("b", 3), ""))
			return
		}
		next := ""
		if aCalls.Add(1) == 1 {
			next = self + r.URL.Path + "?Page=1"
		}
		writeJSON(w, 200, listBody("participants", members("a", 3), next))
	})
	self = e.srv.URL
	e.c.mem = newBudget(1) // any page is over it
	// Bounded, so that a walk waiting for ever fails the test instead.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	nextA, stopA := iter.Pull2(e.c.Participants(ctx, testIS, chA))
	defer stopA()
	a1, err, _ := nextA()
	if err != nil {
		t.Fatal(err)
	}
	bDone := make(chan error, 1)
	go func() {
		got, err := collect(e.c.Participants(ctx, testIS, chB))
		if err == nil && len(got) != 3 {
			err = fmt.Errorf("%d participants", len(got))
		}
		bDone <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if n := bCalls.Load(); n != 0 {
		t.Fatalf("walk B sent %d requests while walk A's page was out", n)
	}
	// A, the oldest walk holding pages, goes on over the budget.
	a2, err, ok := nextA()
	if err != nil || !ok || len(a2.Items) != 3 {
		t.Fatalf("walk A's second page: %v, %v", err, ok)
	}
	if held := e.c.Stats().MemoryHeld; held != (a1.Bytes+a2.Bytes)*decodedFactor {
		t.Errorf("held = %d", held)
	}
	if n := bCalls.Load(); n != 0 {
		t.Fatalf("walk B sent %d requests while walk A's pages were out", n)
	}
	a1.Release()
	a2.Release()
	select {
	case err := <-bDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("walk B still waits after walk A released its pages")
	}
	if n := bCalls.Load(); n != 1 {
		t.Errorf("walk B sent %d requests, want 1", n)
	}
}

// TestBudgetWaitCancelled: a walk waiting for the budget ends with its
// context, without sending a request.
func TestBudgetWaitCancelled(t *testing.T) {
	var calls atomic.Int32
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeJSON(w, 200, listBody("participants", members("p", 2), ""))
	})
	e.c.mem = newBudget(1)
	next, stop := iter.Pull2(e.c.Participants(context.Background(), testIS, testCH))
	defer stop()
	held, err, _ := next()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := collect(e.c.Participants(ctx, testIS, testCH)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's error", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

// smallBufferListener makes each accepted connection's send buffer small,
// so that a handler's writes block until the client reads: what the
// handler has written is then close to what the client has read.
type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// TestLargeReadsBounded: however many large responses are in flight, at
// most largeReads bodies are read past smallBody at once. The server
// counts the bodies it is streaming past smallBody (plus a margin for the
// socket buffers), writing their tails slowly; the client reads through
// small socket buffers.
func TestLargeReadsBounded(t *testing.T) {
	const (
		requests = 40
		size     = 3 << 20
		// The client may read a little past smallBody before it takes a
		// slot (its buffer grows by append: it checks at 958,464 bytes,
		// then at 1,204,224), and the socket and bufio buffers between the
		// two hold some 100 KiB more: past smallBody+margin written, the
		// client is surely reading past smallBody.
		margin = 512 << 10
		tail   = 64 << 10 // written slowly past the mark
	)
	body := listBody("participants", []M{{"sid": "p", "pad": strings.Repeat("x", size)}}, "")
	var streaming, peak atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(200)
		mark := smallBody + margin
		if _, err := w.Write(body[:mark]); err != nil {
			return
		}
		n := streaming.Add(1)
		defer streaming.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		for off := mark; off < len(body); off += tail {
			if _, err := w.Write(body[off:min(off+tail, len(body))]); err != nil {
				return
			}
			if off < mark+8*tail {
				time.Sleep(2 * time.Millisecond)
			}
		}
	}))
	srv.Listener = smallBufferListener{srv.Listener}
	srv.Start()
	tr := &http.Transport{
		MaxIdleConnsPerHost: requests,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(16 << 10)
			}
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	e := newEnvServer(t, srv, func(c *Config) { c.HTTPClient = &http.Client{Transport: tr} })
	// All 40 at once from the start: the limiter's slow start is not what
	// this test is about.
	e.c.lim = newLimiter(DefaultConcurrency, nil, withInitialLimit(DefaultConcurrency))

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for i := range requests {
		wg.Go(func() {
			ch := fmt.Sprintf("CH%032d", i)
			got, err := collect(e.c.Participants(context.Background(), testIS, ch))
			if err == nil && (len(got) != 1 || len(got[0].GetStringBytes("pad")) != size) {
				err = fmt.Errorf("participants of %s: %d", ch, len(got))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d bodies of %d MiB in %v; at most %d streamed past %d KiB at once; %d requests in flight at most",
		requests, size>>20, time.Since(start), peak.Load(), (smallBody+margin)>>10, e.c.Stats().PeakInFlight)
	if p := peak.Load(); p > largeReads {
		t.Errorf("%d bodies read past smallBody at once, want at most %d", p, largeReads)
	}
	// The instrument works: bodies were in flight together, and more
	// requests than large-read slots.
	if p := peak.Load(); p < 2 {
		t.Errorf("at most %d body streamed at once: the test shows nothing", p)
	}
	if p := e.c.Stats().PeakInFlight; p < requests/2 {
		t.Errorf("only %d requests in flight at once: the test shows nothing", p)
	}
}
