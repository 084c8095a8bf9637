package fakeapi

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// concObs is one response's status, Twilio error code and
// Twilio-Concurrent-Requests value (-1 if absent or not a number).
type concObs struct{ status, code, conc int }

func getConc(t testing.TB, hc *http.Client, u, user, pass string) concObs {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", u, err)
		return concObs{conc: -1}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	o := concObs{status: resp.StatusCode, conc: -1}
	if v := resp.Header.Values(ConcurrentRequestsHeader); len(v) == 1 {
		if n, err := strconv.Atoi(v[0]); err == nil {
			o.conc = n
		}
	}
	if o.status != 200 {
		var e struct{ Code int }
		if json.Unmarshal(body, &e) != nil {
			t.Errorf("GET %s: %d with a non-JSON body %q", u, o.status, body)
		}
		o.code = e.Code
	}
	return o
}

// TestConcurrentRequestsHeader: every response carries the number of
// requests in flight at admission, the phantom load included; the
// phantom load takes MaxInFlight slots.
func TestConcurrentRequestsHeader(t *testing.T) {
	const latency = 300 * time.Millisecond
	for _, tc := range []struct {
		name             string
		maxIn, other     int
		burst            int // requests admitted at once
		extraStatus, cnc int // the next request while the burst is in flight
	}{
		{"no cap", 0, 0, 8, 200, 9},
		{"no cap, other 5", 0, 5, 8, 200, 14},
		{"cap 16", 16, 0, 16, 429, 17},
		{"cap 16, other 8", 16, 8, 8, 429, 17},
		{"cap 6, other 5", 6, 5, 1, 429, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Faults{Seed: 1, MaxInFlight: tc.maxIn, OtherInFlight: tc.other}
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			defer hc.CloseIdleConnections()

			// Alone: itself plus the phantom load, on successes and errors.
			alone := startServer(t, Options{Faults: f})
			cr := alone.Credentials()
			for _, c := range []struct {
				path, user string
				status     int
			}{{"/v1/Services", cr.AccountSID, 200}, {"/v1/Services", "", 401}, {"/v1/Nope", cr.AccountSID, 404}} {
				o := getConc(t, hc, alone.URL()+c.path, c.user, cr.AuthToken)
				if o.status != c.status || o.conc != tc.other+1 {
					t.Errorf("alone %s (user %q): %+v, want status %d and header %d", c.path, c.user, o, c.status, tc.other+1)
				}
			}

			f.Latency = latency
			s := startServer(t, Options{Faults: f})
			u := s.URL() + "/v1/Services"

			// A burst filling the slots, then one request more.
			obs := make([]concObs, tc.burst)
			var wg sync.WaitGroup
			for i := range obs {
				wg.Go(func() { obs[i] = getConc(t, hc, u, cr.AccountSID, cr.AuthToken) })
			}
			deadline := time.Now().Add(latency / 2)
			for s.InFlight() < int64(tc.burst) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if n := s.InFlight(); n != int64(tc.burst) {
				t.Fatalf("in flight %d, want the burst of %d", n, tc.burst)
			}
			extra := getConc(t, hc, u, cr.AccountSID, cr.AuthToken)
			wg.Wait()
			if extra.status != tc.extraStatus || extra.conc != tc.cnc || (extra.status == 429 && extra.code != 20429) {
				t.Errorf("request beyond the burst: %+v, want status %d, header %d", extra, tc.extraStatus, tc.cnc)
			}
			var got, want []int
			for i, o := range obs {
				if o.status != 200 {
					t.Errorf("burst request: %+v", o)
				}
				got = append(got, o.conc)
				want = append(want, tc.other+1+i)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("burst headers %v, want %v", got, want)
			}
			c := s.Counters()
			peak := int64(tc.burst)
			if tc.extraStatus == 200 {
				peak++
			}
			if c.PeakInFlight != peak || c.PeakConcurrentRequests != peak+int64(tc.other) {
				t.Errorf("PeakInFlight %d, PeakConcurrentRequests %d; want %d, %d", c.PeakInFlight, c.PeakConcurrentRequests, peak, peak+int64(tc.other))
			}
			if want := map[bool]int64{true: 1, false: 0}[tc.extraStatus == 429]; c.Throttled != want || c.Status429 != want {
				t.Errorf("Throttled %d, Status429 %d, want %d", c.Throttled, c.Status429, want)
			}
		})
	}
}

// TestOtherInFlightUnderLoad: many workers against MaxInFlight 16 with a
// phantom application holding 8: at most 8 real requests are admitted at
// once, and the header tells the account's load.
func TestOtherInFlightUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name         string
		maxIn, other int
	}{
		{"cap 16, other 8", 16, 8},
		{"cap 16, other 0", 16, 0},
		{"cap 4, other 4 (saturated)", 4, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const workers, perWorker = 32, 8
			s := startServer(t, Options{Faults: Faults{Seed: 1, MaxInFlight: tc.maxIn, OtherInFlight: tc.other, Latency: 10 * time.Millisecond}})
			cr := s.Credentials()
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
			defer hc.CloseIdleConnections()
			var mu sync.Mutex
			statuses := map[int]int{}
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for range perWorker {
						o := getConc(t, hc, s.URL()+"/v1/Conversations?PageSize=5", cr.AccountSID, cr.AuthToken)
						mu.Lock()
						statuses[o.status]++
						mu.Unlock()
						switch o.status {
						case 200:
							if o.conc <= tc.other || o.conc > tc.maxIn {
								t.Errorf("200 with header %d, want %d..%d", o.conc, tc.other+1, tc.maxIn)
							}
						case 429:
							if o.code != 20429 || o.conc <= tc.maxIn {
								t.Errorf("429 code %d with header %d, want 20429 and > %d", o.code, o.conc, tc.maxIn)
							}
						default:
							t.Errorf("unexpected %+v", o)
						}
					}
				})
			}
			wg.Wait()
			c := s.Counters()
			slots := int64(tc.maxIn - tc.other)
			t.Logf("statuses %v, peak %d, peak header %d", statuses, c.PeakInFlight, c.PeakConcurrentRequests)
			if c.PeakInFlight > slots || (slots > 1 && c.PeakInFlight < 2) {
				t.Errorf("PeakInFlight %d, want <= %d", c.PeakInFlight, slots)
			}
			if slots == 0 && statuses[429] != workers*perWorker {
				t.Errorf("saturated account: statuses %v, want every request refused", statuses)
			}
			if slots > 0 && (statuses[429] == 0 || statuses[200] == 0 || c.PeakConcurrentRequests != c.PeakInFlight+int64(tc.other)) {
				t.Errorf("statuses %v, peak header %d", statuses, c.PeakConcurrentRequests)
			}
			if c.Throttled != int64(statuses[429]) || s.InFlight() != 0 {
				t.Errorf("Throttled %d, client saw %d 429s", c.Throttled, statuses[429])
			}
		})
	}
}
