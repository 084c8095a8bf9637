package fakeapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binomialBounds returns [lo, hi] = n·p ∓ 5σ: a deterministic seeded run is
// far inside it, and any seed is with probability > 1-1e-6.
func binomialBounds(n int, p float64) (int, int) {
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	return int(math.Floor(mean - 5*sd)), int(math.Ceil(mean + 5*sd))
}

// observation is what a client saw for one request.
type observation struct {
	status     int
	code       int // Twilio error code, 0 for success
	retryAfter string
	err        error // transport or body-read error
}

func observe(hc *http.Client, u, user, pass string) observation {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.SetBasicAuth(user, pass)
	resp, err := hc.Do(req)
	if err != nil {
		return observation{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	o := observation{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), err: err}
	if err == nil && resp.StatusCode != 200 {
		var e struct{ Code int }
		json.Unmarshal(body, &e)
		o.code = e.Code
	} else if err == nil && !json.Valid(body) {
		o.err = errors.New("invalid JSON body")
	}
	return o
}

func TestFaultRates(t *testing.T) {
	const n = 800
	for _, tc := range []struct {
		name   string
		faults Faults
		rate   float64
		// fired reports whether the observation shows the fault.
		fired   func(o observation) bool
		counter func(c Counters) int64
	}{
		{"429", Faults{Rate429: 0.1, RetryAfterRate: 0.5}, 0.1,
			func(o observation) bool { return o.status == 429 && o.code == 20429 },
			func(c Counters) int64 { return c.Injected429 }},
		{"500", Faults{Rate500: 0.08}, 0.08,
			func(o observation) bool { return o.status == 500 && o.code == 20500 },
			func(c Counters) int64 { return c.Injected500 }},
		{"503", Faults{Rate503: 0.05}, 0.05,
			func(o observation) bool { return o.status == 503 && o.code == 20503 },
			func(c Counters) int64 { return c.Injected503 }},
		{"reset", Faults{RateReset: 0.05}, 0.05,
			func(o observation) bool { return o.status == 200 && errors.Is(o.err, syscall.ECONNRESET) },
			func(c Counters) int64 { return c.Resets }},
		{"truncate", Faults{RateTruncate: 0.07}, 0.07,
			func(o observation) bool { return o.status == 200 && errors.Is(o.err, io.ErrUnexpectedEOF) },
			func(c Counters) int64 { return c.Truncations }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.faults.Seed = 42
			s := startServer(t, Options{Faults: tc.faults})
			cr := s.Credentials()
			// Fresh connections: no transport-level retries on reused conns.
			hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			defer hc.CloseIdleConnections()
			u := s.URL() + "/v1/Conversations?PageSize=20"
			fired, retryAfter, ok := 0, 0, 0
			for i := 0; i < n; i++ {
				o := observe(hc, u, cr.AccountSID, cr.AuthToken)
				switch {
				case tc.fired(o):
					fired++
					if o.retryAfter != "" {
						if o.retryAfter != "1" {
							t.Errorf("Retry-After %q", o.retryAfter)
						}
						retryAfter++
					}
				case o.err == nil && o.status == 200:
					ok++
				default:
					t.Fatalf("request %d: unexpected outcome %+v", i, o)
				}
			}
			c := s.Counters()
			lo, hi := binomialBounds(n, tc.rate)
			t.Logf("fired %d/%d (bounds %d..%d)", fired, n, lo, hi)
			if fired < lo || fired > hi {
				t.Errorf("fired %d times, want %d..%d", fired, lo, hi)
			}
			if got := tc.counter(c); got != int64(fired) {
				t.Errorf("counter %d, client saw %d", got, fired)
			}
			if c.Requests != n || fired+ok != n {
				t.Errorf("requests: server %d, client %d+%d, want %d", c.Requests, fired, ok, n)
			}
			if c.RetryAfter != int64(retryAfter) {
				t.Errorf("RetryAfter counter %d, client saw %d", c.RetryAfter, retryAfter)
			}
			if tc.name == "429" {
				lo, hi := binomialBounds(fired, 0.5)
				if retryAfter < lo || retryAfter > hi || c.Status429 != int64(fired) {
					t.Errorf("Retry-After on %d of %d 429s (status429 %d)", retryAfter, fired, c.Status429)
				}
			}
			if tc.name == "500" || tc.name == "503" {
				if c.Status5xx != int64(fired) {
					t.Errorf("Status5xx %d, want %d", c.Status5xx, fired)
				}
			}
		})
	}
}

func TestFaultsDeterministic(t *testing.T) {
	f := Faults{Seed: 7, Rate500: 0.2, Rate429: 0.1, RetryAfterRate: 0.5}
	run := func() []string {
		s := startServer(t, Options{Faults: f})
		c := newClient(t, s)
		var out []string
		for i := 0; i < 60; i++ {
			status, h, _, err := c.get(s.URL() + "/v1/Services")
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, http.StatusText(status)+"/"+h.Get("Retry-After"))
		}
		return out
	}
	a, b := run(), run()
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("fault sequence differs between runs:\n%v\n%v", a, b)
	}
}

func TestMaxInFlight(t *testing.T) {
	const capN, workers, perWorker = 4, 16, 5
	s := startServer(t, Options{Faults: Faults{Seed: 1, MaxInFlight: capN, Latency: 30 * time.Millisecond, RetryAfterRate: 1}})
	cr := s.Credentials()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer hc.CloseIdleConnections()
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker; i++ {
				o := observe(hc, s.URL()+"/v1/Services", cr.AccountSID, cr.AuthToken)
				mu.Lock()
				counts[o.status]++
				if o.err != nil || (o.status == 429 && (o.code != 20429 || o.retryAfter != "1")) {
					t.Errorf("bad outcome %+v", o)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	c := s.Counters()
	t.Logf("statuses %v, peak %d, throttled %d", counts, c.PeakInFlight, c.Throttled)
	if counts[429] == 0 || counts[200] == 0 || counts[200]+counts[429] != workers*perWorker {
		t.Errorf("statuses %v", counts)
	}
	if c.PeakInFlight > capN || c.PeakInFlight < 2 {
		t.Errorf("peak in flight %d, cap %d", c.PeakInFlight, capN)
	}
	if c.Throttled != int64(counts[429]) || c.Status429 != int64(counts[429]) || c.RetryAfter != int64(counts[429]) {
		t.Errorf("counters %+v vs client %v", c, counts)
	}
}

func TestLatency(t *testing.T) {
	s := startServer(t, Options{Faults: Faults{Latency: 40 * time.Millisecond}})
	c := newClient(t, s)
	start := time.Now()
	for i := 0; i < 3; i++ {
		c.getJSON(s.URL() + "/v1/Configuration")
	}
	if d := time.Since(start); d < 120*time.Millisecond {
		t.Errorf("3 requests took %v, want >= 120ms", d)
	}
	// The sleep honours the request context.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	slow := startServer(t, Options{Faults: Faults{Latency: 5 * time.Second}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, slow.URL()+"/v1/Services", nil)
	start = time.Now()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Error("expected a context error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled request took %v", d)
	}
}

func TestDeletedMidCrawl(t *testing.T) {
	f := Faults{Seed: 3, DeletedConversations: 0.2, DeletedUsers: 0.25}
	s := startServer(t, Options{Faults: f})
	c := newClient(t, s)
	ds := s.Dataset()
	svc := ds.DefaultServiceSID()
	deletedConvs, deletedUsers := 0, 0
	convs := c.walk(s.URL()+"/v1/Services/"+svc+"/Conversations", "conversations", nil)
	if len(convs) != len(ds.Conversations(svc)) {
		t.Fatalf("deleted conversations must still be listed: %d vs %d", len(convs), len(ds.Conversations(svc)))
	}
	for _, cv := range convs {
		sid := cv["sid"].(string)
		for _, u := range []string{
			s.URL() + "/v1/Services/" + svc + "/Conversations/" + sid + "/Participants",
			s.URL() + "/v1/Conversations/" + sid + "/Participants",
		} {
			status, h, body, err := c.get(u)
			if err != nil {
				t.Fatal(err)
			}
			if f.IsConversationDeleted(sid) {
				deletedConvs++
				if status != 404 {
					t.Fatalf("deleted %s: status %d", sid, status)
				}
				wantErr(t, h, body, 404, 20404, "was not found")
			} else if status != 200 {
				t.Fatalf("%s: status %d", sid, status)
			}
		}
	}
	for _, u := range ds.Users(svc) {
		for _, ref := range []string{u.SID, escapePath(u.Identity)} {
			status, _, _, err := c.get(s.URL() + "/v1/Users/" + ref + "/Conversations")
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 404, false: 200}[f.IsUserDeleted(u.SID)]; status != want {
				t.Fatalf("user %q: status %d, want %d", u.Identity, status, want)
			}
			if status == 404 {
				deletedUsers++
			}
		}
	}
	cnt := s.Counters()
	if deletedConvs == 0 || deletedConvs == 2*len(convs) || deletedUsers == 0 {
		t.Errorf("deleted: %d conversation hits, %d user hits", deletedConvs, deletedUsers)
	}
	if cnt.DeletedConversation404 != int64(deletedConvs) || cnt.DeletedUser404 != int64(deletedUsers) || cnt.Status404 != int64(deletedConvs+deletedUsers) {
		t.Errorf("counters %+v", cnt)
	}
	all := s.DeletedConversationSIDs()
	for _, sid := range all {
		if !f.IsConversationDeleted(sid) {
			t.Errorf("%s listed as deleted", sid)
		}
	}
	if n := len(s.DeletedUserSIDs()); n == 0 {
		t.Error("no deleted users listed")
	}
	s.ResetCounters()
	if c := s.Counters(); c.Requests != 0 || len(c.ByEndpoint) != 0 || c.Status404 != 0 {
		t.Errorf("after reset: %+v", c)
	}
}

func TestCountersByEndpoint(t *testing.T) {
	s := startServer(t, Options{})
	c := newClient(t, s)
	ds := s.Dataset()
	svc := ds.DefaultServiceSID()
	u := ds.Users(svc)[0]
	cv := ds.Conversations(svc)[0]
	paths := map[string][]string{
		EndpointConfiguration:            {"/v1/Configuration"},
		EndpointServices:                 {"/v1/Services"},
		EndpointUsers:                    {"/v1/Users", "/v1/Services/" + svc + "/Users"},
		EndpointUserConversations:        {"/v1/Users/" + u.SID + "/Conversations", "/v1/Services/" + svc + "/Users/" + u.SID + "/Conversations"},
		EndpointConversations:            {"/v1/Conversations", "/v1/Services/" + svc + "/Conversations"},
		EndpointParticipants:             {"/v1/Conversations/" + cv.SID + "/Participants", "/v1/Services/" + svc + "/Conversations/" + cv.SID + "/Participants"},
		EndpointParticipantConversations: {"/v1/ParticipantConversations?Identity=" + q(u.Identity), "/v1/Services/" + svc + "/ParticipantConversations?Identity=" + q(u.Identity)},
		EndpointUnknown:                  {"/v1/Bogus"},
	}
	for _, ps := range paths {
		for _, p := range ps {
			c.get(s.URL() + p)
		}
	}
	// One unauthenticated request.
	(&apiClient{t: t, hc: http.DefaultClient}).get(s.URL() + "/v1/Services")
	got := s.Counters()
	for ep, ps := range paths {
		want := int64(len(ps))
		if ep == EndpointServices {
			want++
		}
		if got.ByEndpoint[ep] != want {
			t.Errorf("%s: %d, want %d", ep, got.ByEndpoint[ep], want)
		}
	}
	if got.Status401 != 1 || got.Status404 != 1 || got.ByStatus[200] != got.Requests-2 {
		t.Errorf("counters %+v", got)
	}
}

// TestRepeatedRows: with RateRepeat, follow-on pages start with the last
// row of the page before at the configured rate, and nothing else changes:
// the distinct rows are still every row of the list.
func TestRepeatedRows(t *testing.T) {
	const rate = 0.3
	s := startServer(t, Options{Faults: Faults{Seed: 9, RateRepeat: rate}})
	c := newClient(t, s)
	svc := s.Dataset().Services()[0].SID
	pages := 0
	rows := c.walk(s.URL()+"/v1/Services/"+svc+"/Conversations?PageSize=2", "conversations", func(map[string]any) { pages++ })
	seen := map[string]int{}
	for _, r := range rows {
		seen[r["sid"].(string)]++
	}
	repeats := len(rows) - len(seen)
	want := len(s.Dataset().Conversations(svc))
	if len(seen) != want {
		t.Errorf("%d distinct rows, want %d", len(seen), want)
	}
	for sid, n := range seen {
		if n > 2 {
			t.Errorf("%s served %d times", sid, n)
		}
	}
	lo, hi := binomialBounds(pages-1, rate)
	t.Logf("%d repeats over %d follow-on pages (bounds %d..%d)", repeats, pages-1, lo, hi)
	if repeats < lo || repeats > hi || s.Counters().Repeats != int64(repeats) {
		t.Errorf("repeats %d (counter %d), want %d..%d", repeats, s.Counters().Repeats, lo, hi)
	}
}
