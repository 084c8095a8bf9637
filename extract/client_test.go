package extract

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fastjson"
)

func TestPagerWalksPages(t *testing.T) {
	type call func(c *Client, ctx context.Context) iter.Seq2[PageOf, error]
	cases := []struct {
		name     string
		path     string
		key      string
		pageSize string
		query    url.Values // expected non-paging query on the first request
		call     call
	}{
		{"Services", "/v1/Services", "services", "100", nil,
			func(c *Client, ctx context.Context) iter.Seq2[PageOf, error] { return c.Services(ctx) }},
		{"Users", "/v1/Services/" + testIS + "/Users", "users", "50", nil,
			func(c *Client, ctx context.Context) iter.Seq2[PageOf, error] { return c.Users(ctx, testIS, "") }},
		{"UserConversations", "/v1/Services/" + testIS + "/Users/" + testUS + "/Conversations", "conversations", "50", nil,
			func(c *Client, ctx context.Context) iter.Seq2[PageOf, error] {
				return c.UserConversations(ctx, testIS, testUS)
			}},
		{"Conversations", "/v1/Services/" + testIS + "/Conversations", "conversations", "100", nil,
			func(c *Client, ctx context.Context) iter.Seq2[PageOf, error] { return c.Conversations(ctx, testIS, "") }},
		{"Participants", "/v1/Services/" + testIS + "/Conversations/" + testCH + "/Participants", "participants", "100", nil,
			func(c *Client, ctx context.Context) iter.Seq2[PageOf, error] {
				return c.Participants(ctx, testIS, testCH)
			}},
		{"ParticipantConversations", "/v1/Services/" + testIS + "/ParticipantConversations", "conversations", "50",
			url.Values{"Identity": {"alice"}},
			func(c *Client, ctx context.Context) iter.Seq2[PageOf, error] {
				return c.ParticipantConversations(ctx, testIS, Subject{Identity: "alice"})
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Later pages use a query the client must send verbatim (odd
			// order, odd escaping) and no PageSize of its own.
			page2 := tc.path + "?Page=1&PageToken=PT%2Fone&PageSize=" + tc.pageSize
			page3 := tc.path + "?PageToken=PT2&Page=2"
			var calls atomic.Int32
			var srvURL string
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				n := calls.Add(1)
				if r.URL.Path != tc.path {
					t.Errorf("request %d path = %q, want %q", n, r.URL.Path, tc.path)
				}
				switch n {
				case 1:
					q := r.URL.Query()
					if got := q.Get("PageSize"); got != tc.pageSize {
						t.Errorf("first PageSize = %q, want %q", got, tc.pageSize)
					}
					q.Del("PageSize")
					if tc.query == nil {
						tc.query = url.Values{}
					}
					if q.Encode() != tc.query.Encode() {
						t.Errorf("first query = %q, want %q", q.Encode(), tc.query.Encode())
					}
					writeJSON(w, 200, listBody(tc.key, []M{{"sid": "a1"}, {"sid": "a2"}}, srvURL+page2))
				case 2:
					if got, want := r.URL.RequestURI(), page2; got != want {
						t.Errorf("page 2 request = %q, want %q", got, want)
					}
					writeJSON(w, 200, listBody(tc.key, []M{{"sid": "b1"}, {"sid": "b2", "n": 12345678901234567}}, srvURL+page3))
				case 3:
					if got, want := r.URL.RequestURI(), page3; got != want {
						t.Errorf("page 3 request = %q, want %q", got, want)
					}
					// Written by hand: members in another order than json.Marshal's.
					fmt.Fprintf(w, `{"meta": {"next_page_url": null, "key": %q}, %q: [{"sid": "c1"}]}`, tc.key, tc.key)
				default:
					t.Errorf("unexpected request %d", n)
				}
			})
			srvURL = e.srv.URL
			got, err := collect(tc.call(e.c, context.Background()))
			if err != nil {
				t.Fatal(err)
			}
			if s := sids(got); s != "a1,a2,b1,b2,c1" {
				t.Errorf("items = %s", s)
			}
			// Numbers keep their digits: no float64 on the way.
			if n := got[3].Get("n"); n == nil || n.Type() != fastjson.TypeNumber || n.String() != "12345678901234567" || n.GetInt64() != 12345678901234567 {
				t.Errorf("number = %v, want 12345678901234567", n)
			}
			st := e.c.Stats()
			if st.Pages != 3 || st.Requests != 3 || st.Retries != 0 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestPagerStopsEarly(t *testing.T) {
	var calls atomic.Int32
	var srvURL string
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		writeJSON(w, 200, listBody("services", []M{{"sid": "a"}, {"sid": "b"}}, srvURL+"/v1/Services?Page=1"))
	})
	srvURL = e.srv.URL
	for pg, err := range e.c.Services(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		if len(pg.Items) != 2 || pg.Next != srvURL+"/v1/Services?Page=1" {
			t.Errorf("page = %d items, next %q", len(pg.Items), pg.Next)
		}
		pg.Release()
		break
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("requests = %d, want 1 (lazy paging)", n)
	}
}

func TestBasicAuthAndHeaders(t *testing.T) {
	cases := []struct {
		name       string
		creds      Credentials
		user, pass string
	}{
		{"token", Credentials{AccountSID: testSID, AuthToken: testToken}, testSID, testToken},
		{"api key", Credentials{AccountSID: testSID, APIKey: testKey, APISecret: testSecret}, testKey, testSecret},
		{"api key wins", Credentials{AccountSID: testSID, AuthToken: testToken, APIKey: testKey, APISecret: testSecret}, testKey, testSecret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				u, p, ok := r.BasicAuth()
				if !ok || u != tc.user || p != tc.pass {
					t.Errorf("basic auth = %q, %q, %v", u, p, ok)
				}
				if got := r.Header.Get("Accept"); got != "application/json" {
					t.Errorf("Accept = %q", got)
				}
				if got := r.Header.Get("User-Agent"); got != "convsync" {
					t.Errorf("User-Agent = %q", got)
				}
				if r.Method != http.MethodGet {
					t.Errorf("method = %s", r.Method)
				}
				writeJSON(w, 200, listBody("services", nil, ""))
			}, func(c *Config) { c.Credentials = tc.creds })
			if _, err := collect(e.c.Services(context.Background())); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCredentialsFromEnv(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		want    Credentials
		wantErr []string // substrings of the error
	}{
		{"token", map[string]string{"TWILIO_ACCOUNT_SID": testSID, "TWILIO_AUTH_TOKEN": testToken},
			Credentials{AccountSID: testSID, AuthToken: testToken}, nil},
		{"api key", map[string]string{"TWILIO_ACCOUNT_SID": testSID, "TWILIO_API_KEY": testKey, "TWILIO_API_SECRET": testSecret},
			Credentials{AccountSID: testSID, APIKey: testKey, APISecret: testSecret}, nil},
		{"both", map[string]string{"TWILIO_ACCOUNT_SID": testSID, "TWILIO_AUTH_TOKEN": testToken, "TWILIO_API_KEY": testKey, "TWILIO_API_SECRET": testSecret},
			Credentials{AccountSID: testSID, AuthToken: testToken, APIKey: testKey, APISecret: testSecret}, nil},
		{"trimmed", map[string]string{"TWILIO_ACCOUNT_SID": " " + testSID + "\n", "TWILIO_AUTH_TOKEN": testToken + "\n"},
			Credentials{AccountSID: testSID, AuthToken: testToken}, nil},
		{"nothing", map[string]string{}, Credentials{}, []string{"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY"}},
		{"no sid", map[string]string{"TWILIO_AUTH_TOKEN": testToken}, Credentials{}, []string{"TWILIO_ACCOUNT_SID"}},
		{"no token", map[string]string{"TWILIO_ACCOUNT_SID": testSID}, Credentials{}, []string{"TWILIO_AUTH_TOKEN"}},
		{"key without secret", map[string]string{"TWILIO_ACCOUNT_SID": testSID, "TWILIO_AUTH_TOKEN": testToken, "TWILIO_API_KEY": testKey},
			Credentials{}, []string{"TWILIO_API_SECRET"}},
		{"secret without key", map[string]string{"TWILIO_ACCOUNT_SID": testSID, "TWILIO_API_SECRET": testSecret},
			Credentials{}, []string{"TWILIO_API_KEY"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CredentialsFromEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr == nil {
				if err != nil || got != tc.want {
					t.Fatalf("got %#v, %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %s", err, s)
				}
			}
			for _, v := range []string{testSID, testToken, testKey, testSecret} {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error %q reveals a value", err)
				}
			}
		})
	}
}

func TestCredentialsRedacted(t *testing.T) {
	c := Credentials{AccountSID: testSID, AuthToken: testToken, APIKey: testKey, APISecret: testSecret}
	js, _ := json.Marshal(c)
	// A Config marshals its Credentials through their MarshalJSON too (its
	// func fields cannot be marshalled, so only the credentials are).
	cfgJS, _ := json.Marshal(struct{ Credentials Credentials }{c})
	outs := []string{
		c.String(), c.GoString(),
		fmt.Sprint(c), fmt.Sprintf("%v|%+v|%#v|%s|%q|%x", c, c, c, c, c, c),
		fmt.Sprintf("%v|%+v|%#v", &c, Config{Credentials: c}, Config{Credentials: c}),
		string(js), string(cfgJS),
	}
	for _, s := range outs {
		if strings.Contains(s, testToken) || strings.Contains(s, testSecret) {
			t.Errorf("secret revealed: %s", s)
		}
	}
	if !strings.Contains(c.String(), testSID) || !strings.Contains(c.String(), redacted) {
		t.Errorf("String() = %s", c)
	}
}

func TestNewValidation(t *testing.T) {
	good := Credentials{AccountSID: testSID, AuthToken: testToken}
	cases := []struct {
		name  string
		cfg   Config
		valid bool
	}{
		{"default base", Config{Credentials: good}, true},
		{"http", Config{BaseURL: "http://127.0.0.1:8080", Credentials: good}, true},
		{"path prefix", Config{BaseURL: "https://proxy.example/twilio/", Credentials: good}, true},
		{"relative", Config{BaseURL: "/v1", Credentials: good}, false},
		{"ftp", Config{BaseURL: "ftp://example.com", Credentials: good}, false},
		{"no host", Config{BaseURL: "https://", Credentials: good}, false},
		{"user info", Config{BaseURL: "https://AC:tok@conversations.twilio.com", Credentials: good}, false},
		{"query", Config{BaseURL: "https://conversations.twilio.com?x=1", Credentials: good}, false},
		{"no credentials", Config{}, false},
		{"sid only", Config{Credentials: Credentials{AccountSID: testSID}}, false},
		{"key only", Config{Credentials: Credentials{APIKey: testKey}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if (err == nil) != tc.valid {
				t.Fatalf("New: err = %v, want valid=%v", err, tc.valid)
			}
			if err != nil && strings.Contains(err.Error(), "AC:tok") {
				t.Errorf("error reveals the URL's credentials: %v", err)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	cases := []struct {
		name     string
		fail     func(t *testing.T, w http.ResponseWriter)
		check    func(t *testing.T, st Stats, delays []time.Duration)
		failures int
	}{
		// A 429 other than 20429 (over the concurrency limit) backs off,
		// honouring Retry-After.
		{"429 with Retry-After", func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Retry-After", "7")
			writeJSON(w, 429, twilioError(429, 14107, "Rate limit exceeded"))
		}, func(t *testing.T, st Stats, d []time.Duration) {
			if st.Throttled != 2 {
				t.Errorf("throttled = %d", st.Throttled)
			}
			for _, x := range d {
				if x < 7*time.Second {
					t.Errorf("delay %v ignores Retry-After: 7", x)
				}
			}
		}, 2},
		{"429 with Retry-After date", func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Retry-After", time.Now().Add(30*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(429)
		}, func(t *testing.T, st Stats, d []time.Duration) {
			if len(d) != 1 || d[0] < 25*time.Second || d[0] > 31*time.Second {
				t.Errorf("delays = %v, want about 30s", d)
			}
		}, 1},
		// The longest Retry-After waited out is MaxRetryAfter itself (a
		// longer one fails at once: TestRetryAfterTooLong).
		{"429 with Retry-After at the maximum", func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(429)
		}, func(t *testing.T, st Stats, d []time.Duration) {
			if len(d) != 1 || d[0] != DefaultMaxRetryAfter {
				t.Errorf("delays = %v, want %v", d, DefaultMaxRetryAfter)
			}
		}, 1},
		{"429 without Retry-After", func(t *testing.T, w http.ResponseWriter) {
			writeJSON(w, 429, twilioError(429, 14107, "Rate limit exceeded"))
		}, func(t *testing.T, st Stats, d []time.Duration) {
			// BaseBackoff 100ms, MaxBackoff 1s: ceilings 100ms, 200ms, 400ms.
			for i, x := range d {
				if ceil := 100 * time.Millisecond << i; x < 0 || x > ceil {
					t.Errorf("delay %d = %v, want within [0, %v]", i, x, ceil)
				}
			}
		}, 3},
		{"500", func(t *testing.T, w http.ResponseWriter) {
			writeJSON(w, 500, twilioError(500, 20500, "Internal Server Error"))
		}, func(t *testing.T, st Stats, d []time.Duration) {
			if st.ServerErrors != 1 {
				t.Errorf("server errors = %d", st.ServerErrors)
			}
		}, 1},
		{"503 HTML", func(t *testing.T, w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(503)
			_, _ = w.Write([]byte("<html>busy</html>"))
		}, func(t *testing.T, st Stats, d []time.Duration) {
			if st.ServerErrors != 2 {
				t.Errorf("server errors = %d", st.ServerErrors)
			}
		}, 2},
		{"502 and 504", func() func(t *testing.T, w http.ResponseWriter) {
			var n atomic.Int32
			return func(t *testing.T, w http.ResponseWriter) {
				w.WriteHeader([]int{502, 504}[n.Add(1)%2])
			}
		}(), nil, 2},
		{"connection reset", resetConn, func(t *testing.T, st Stats, d []time.Duration) {
			if st.NetworkErrors < 1 {
				t.Errorf("network errors = %d", st.NetworkErrors)
			}
		}, 1},
		{"truncated body", truncated, func(t *testing.T, st Stats, d []time.Duration) {
			if st.NetworkErrors != 2 {
				t.Errorf("network errors = %d", st.NetworkErrors)
			}
		}, 2},
		{"invalid JSON", func(t *testing.T, w http.ResponseWriter) {
			writeJSON(w, 200, []byte(`{"services": [{"sid": "x"},`))
		}, nil, 1},
		{"HTML on 200", func(t *testing.T, w http.ResponseWriter) {
			writeJSON(w, 200, []byte(`<html>maintenance</html>`))
		}, nil, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				if int(calls.Add(1)) <= tc.failures {
					tc.fail(t, w)
					return
				}
				writeJSON(w, 200, listBody("services", []M{{"sid": "ok"}}, ""))
			}, func(c *Config) {
				c.BaseBackoff, c.MaxBackoff, c.MaxRetries = 100*time.Millisecond, time.Second, 5
			})
			got, err := collect(e.c.Services(context.Background()))
			if err != nil {
				t.Fatal(err)
			}
			if sids(got) != "ok" {
				t.Errorf("items = %v", got)
			}
			st := e.c.Stats()
			delays := e.sleep.get()
			if int(st.Retries) != tc.failures || len(delays) != tc.failures || st.Pages != 1 {
				t.Errorf("stats = %+v, delays = %v, want %d retries", st, delays, tc.failures)
			}
			if int(calls.Load()) != tc.failures+1 {
				t.Errorf("server saw %d requests, want %d", calls.Load(), tc.failures+1)
			}
			if !strings.Contains(e.log.String(), `"level":"warn"`) {
				t.Errorf("no retry warning logged: %s", e.log)
			}
			if tc.check != nil {
				tc.check(t, st, delays)
			}
		})
	}
}

func TestRetriesMidway(t *testing.T) {
	// A failure on page 2 is retried there, without restarting the list.
	var calls atomic.Int32
	var srvURL string
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			writeJSON(w, 200, listBody("users", []M{{"sid": "u1"}}, srvURL+"/v1/Services/"+testIS+"/Users?Page=1"))
		case 2:
			w.WriteHeader(503)
		default:
			if r.URL.Query().Get("Page") != "1" {
				t.Errorf("retry went to %s", r.URL)
			}
			writeJSON(w, 200, listBody("users", []M{{"sid": "u2"}}, ""))
		}
	})
	srvURL = e.srv.URL
	got, err := collect(e.c.Users(context.Background(), testIS, ""))
	if err != nil || sids(got) != "u1,u2" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestGivesUp(t *testing.T) {
	cases := []struct {
		name   string
		h      func(t *testing.T, w http.ResponseWriter)
		target error
	}{
		{"503", func(t *testing.T, w http.ResponseWriter) {
			writeJSON(w, 503, twilioError(503, 20503, "Service Unavailable"))
		}, nil},
		{"429", func(t *testing.T, w http.ResponseWriter) { w.WriteHeader(429) }, ErrRateLimited},
		{"reset", resetConn, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				tc.h(t, w)
			}, func(c *Config) { c.MaxRetries = 3 })
			var errs []error
			var items int
			for pg, err := range e.c.Services(context.Background()) {
				if err != nil {
					errs = append(errs, err)
				} else {
					items += len(pg.Items)
					pg.Release()
				}
			}
			if len(errs) != 1 || items != 0 {
				t.Fatalf("errors = %v, items = %d; want exactly one error", errs, items)
			}
			err := errs[0]
			if calls.Load() < 4 { // a reset may also be retried once by net/http
				t.Errorf("server saw %d requests, want 4", calls.Load())
			}
			if e.c.Stats().Requests != 4 || e.c.Stats().Retries != 3 {
				t.Errorf("stats = %+v", e.c.Stats())
			}
			if !strings.Contains(err.Error(), "4 attempts") {
				t.Errorf("error %q does not say how many attempts", err)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("error %v is not %v", err, tc.target)
			}
		})
	}
}

func TestNoRetry(t *testing.T) {
	const userPath = "/v1/Services/" + testIS + "/Users"
	cases := []struct {
		name   string
		status int
		body   []byte
		target error
		code   int
		msg    string
	}{
		{"401", 401, twilioError(401, 20003, "Authenticate"), ErrUnauthorized, 20003, "Authenticate"},
		{"403", 403, twilioError(403, 20403, "Forbidden"), ErrUnauthorized, 20403, "Forbidden"},
		{"404", 404, twilioError(404, 20404, "The requested resource /Services/"+testIS+"/Users was not found"), ErrNotFound, 20404,
			"The requested resource /Services/" + testIS + "/Users was not found"},
		{"400", 400, twilioError(400, 20001, "Invalid PageSize"), nil, 20001, "Invalid PageSize"},
		{"400 not JSON", 400, []byte("nope"), nil, 0, "Bad Request"},
		// A 404 that is not Twilio's is retried as untrustworthy:
		// TestUntrustedAnswers.
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				writeJSON(w, tc.status, tc.body)
			})
			_, err := collect(e.c.Users(context.Background(), testIS, ""))
			if calls.Load() != 1 || len(e.sleep.get()) != 0 {
				t.Errorf("server saw %d requests, %d sleeps; want 1, 0", calls.Load(), len(e.sleep.get()))
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T) is not an *APIError", err, err)
			}
			if ae.Status != tc.status || ae.Code != tc.code || ae.Message != tc.msg || ae.Method != "GET" || ae.Path != userPath {
				t.Errorf("APIError = %+v", ae)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("%v is not %v", err, tc.target)
			}
			for _, other := range []error{ErrNotFound, ErrUnauthorized, ErrRateLimited, ErrForeignHost, ErrUntrusted} {
				if other != tc.target && errors.Is(err, other) {
					t.Errorf("%v unexpectedly is %v", err, other)
				}
			}
			// Advice on which variables to check is cmd's business now: the
			// client's errors do not name TWILIO_ variables.
			if strings.Contains(err.Error(), "TWILIO_") {
				t.Errorf("error %q names TWILIO_ variables", err)
			}
			want := fmt.Sprintf("twilio: GET %s: %d", userPath, tc.status)
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error = %q, want prefix %q", err, want)
			}
		})
	}
}

func TestForeignHostRefused(t *testing.T) {
	var foreignCalls atomic.Int32
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreignCalls.Add(1)
		writeJSON(w, 200, listBody("services", []M{{"sid": "stolen"}}, ""))
	}))
	defer foreign.Close()

	// A page is checked before it is yielded, its next_page_url too: the
	// page that points to a foreign host is not handed out.
	cases := []struct {
		name  string
		h     func(w http.ResponseWriter, r *http.Request, self string)
		items string
	}{
		{"next_page_url", func(w http.ResponseWriter, r *http.Request, self string) {
			writeJSON(w, 200, listBody("services", []M{{"sid": "a"}}, foreign.URL+"/v1/Services?Page=1"))
		}, ""},
		{"next_page_url other scheme", func(w http.ResponseWriter, r *http.Request, self string) {
			writeJSON(w, 200, listBody("services", []M{{"sid": "a"}}, strings.Replace(self, "http:", "https:", 1)+"/v1/Services?Page=1"))
		}, ""},
		{"next_page_url with user info", func(w http.ResponseWriter, r *http.Request, self string) {
			writeJSON(w, 200, listBody("services", []M{{"sid": "a"}}, strings.Replace(self, "http://", "http://u:p@", 1)+"/v1/Services?Page=1"))
		}, ""},
		{"redirect", func(w http.ResponseWriter, r *http.Request, self string) {
			http.Redirect(w, r, foreign.URL+"/v1/Services", http.StatusFound)
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			foreignCalls.Store(0)
			var self string
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) { tc.h(w, r, self) })
			self = e.srv.URL
			got, err := collect(e.c.Services(context.Background()))
			if err == nil {
				t.Fatal("no error")
			}
			if n := foreignCalls.Load(); n != 0 {
				t.Errorf("foreign server received %d requests", n)
			}
			if sids(got) != tc.items {
				t.Errorf("items = %s, want %s", sids(got), tc.items)
			}
			if !errors.Is(err, ErrForeignHost) || len(e.sleep.get()) != 0 {
				if tc.name == "redirect" {
					fixedBug(t, "attempt() rebuilds transport errors with errors.New(scrubbed text), losing ErrForeignHost",
						"err = %v, %d retries; want ErrForeignHost and no retry", err, len(e.sleep.get()))
				}
				t.Errorf("err = %v, %d retries; want ErrForeignHost and no retry", err, len(e.sleep.get()))
			}
		})
	}
}

func TestSameHostRedirectAndRepeat(t *testing.T) {
	var calls atomic.Int32
	var self string
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path == "/old" {
			writeJSON(w, 200, listBody("services", []M{{"sid": "b"}}, self+"/v1/Services?PageSize=100"))
			return
		}
		if r.URL.Query().Get("Page") == "" {
			writeJSON(w, 200, listBody("services", []M{{"sid": "a"}}, self+"/v1/Services?Page=1"))
			return
		}
		http.Redirect(w, r, "/old", http.StatusFound)
	})
	self = e.srv.URL
	// The redirect is followed (same host); the page it leads to points
	// back to the first page: a cycle, refused before that page is handed
	// out.
	got, err := collect(e.c.Services(context.Background()))
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "repeats") || sids(got) != "a" {
		t.Fatalf("got %s, %v; want a and a repeat error", sids(got), err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3 (page 1, the redirect, /old)", n)
	}
}

var awkwardIdentities = []string{
	"alice",
	"a/b/c",
	"+15551234567",
	"Jane Doe",
	"zoë 日本",
	"100%",
	"%2F",
	"a?b#c&d=e",
	"..",
	"semi;colon",
}

func TestPathEncoding(t *testing.T) {
	for _, id := range awkwardIdentities {
		t.Run(id, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				segs := strings.Split(r.URL.EscapedPath(), "/")
				// /v1/Services/IS/Users/{id}/Conversations
				if len(segs) != 7 || segs[3] != testIS || segs[6] != "Conversations" {
					t.Errorf("path = %q", r.URL.EscapedPath())
					writeJSON(w, 404, nil)
					return
				}
				got, err := url.PathUnescape(segs[5])
				if err != nil || got != id {
					t.Errorf("identity = %q (%v), want %q", got, err, id)
				}
				if r.URL.Query().Get("PageSize") != "50" {
					t.Errorf("query = %q", r.URL.RawQuery)
				}
				writeJSON(w, 200, listBody("conversations", []M{{"sid": testCH}}, ""))
			})
			if _, err := collect(e.c.UserConversations(context.Background(), testIS, id)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSubjectQuery(t *testing.T) {
	cases := []struct {
		subject    Subject
		key, value string
	}{
		{Subject{Address: "+15551234567"}, "Address", "+15551234567"},
		{Subject{Address: "whatsapp:+15551234567"}, "Address", "whatsapp:+15551234567"},
		{Subject{Address: "messenger:1234&x=y"}, "Address", "messenger:1234&x=y"},
		{Subject{Identity: "a b+c/ü%20"}, "Identity", "a b+c/ü%20"},
	}
	for _, tc := range cases {
		t.Run(tc.value, func(t *testing.T) {
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				if got := q[tc.key]; len(got) != 1 || got[0] != tc.value {
					t.Errorf("%s = %q, want %q (raw query %q)", tc.key, got, tc.value, r.URL.RawQuery)
				}
				if len(q) != 2 || q.Get("PageSize") != "50" {
					t.Errorf("query = %v", q)
				}
				writeJSON(w, 200, listBody("conversations", nil, ""))
			})
			if _, err := collect(e.c.ParticipantConversations(context.Background(), testIS, tc.subject)); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("Kind and Value", func(t *testing.T) {
		for _, tc := range []struct {
			s           Subject
			kind, value string
		}{
			{Subject{Identity: "alice"}, "identity", "alice"},
			{Subject{Address: "whatsapp:+1555"}, "address", "whatsapp:+1555"},
		} {
			if tc.s.Kind() != tc.kind || tc.s.Value() != tc.value {
				t.Errorf("%+v: Kind, Value = %q, %q", tc.s, tc.s.Kind(), tc.s.Value())
			}
		}
	})
	t.Run("invalid subject", func(t *testing.T) {
		e := newEnv(t, func(w http.ResponseWriter, r *http.Request) { t.Error("unexpected request") })
		for _, s := range []Subject{{}, {Identity: "a", Address: "+1"}} {
			if _, err := collect(e.c.ParticipantConversations(context.Background(), testIS, s)); err == nil {
				t.Errorf("%+v: no error", s)
			}
		}
		if _, err := collect(e.c.Users(context.Background(), "", "")); err == nil {
			t.Error("empty service SID: no error")
		}
	})
}

func TestNoSecretsInErrorsOrLogs(t *testing.T) {
	const identity = "jane.doe@example.com/secret room"
	const address = "whatsapp:+15557654321"
	secrets := []string{testToken, testSecret}
	for _, v := range []string{identity, address} {
		secrets = append(secrets, v, url.PathEscape(v), url.QueryEscape(v), "+15557654321", "jane.doe")
	}
	// The server echoes the request path and query in its messages, as
	// Twilio does in 404 messages.
	modes := []func(w http.ResponseWriter, r *http.Request){
		func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 404, twilioError(404, 20404, "The requested resource "+r.URL.Path+"?"+r.URL.RawQuery+" was not found"))
		},
		func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 400, twilioError(400, 50000, "bad "+r.URL.Query().Get("Address")+r.URL.Query().Get("Identity")+" "+testToken))
		},
		func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 503, twilioError(503, 20503, "unavailable "+r.URL.String()))
		},
		func(w http.ResponseWriter, r *http.Request) { resetConn(t, w) },
		func(w http.ResponseWriter, r *http.Request) { truncated(t, w) },
		func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, []byte("{"+r.URL.String())) },
		func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, 401, twilioError(401, 20003, "Authenticate"))
		},
	}
	for i, mode := range modes {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			e := newEnv(t, mode, func(c *Config) { c.MaxRetries = 1 })
			ctx := context.Background()
			var errs []string
			for _, seq := range []iter.Seq2[PageOf, error]{
				e.c.UserConversations(ctx, testIS, identity),
				e.c.ParticipantConversations(ctx, testIS, Subject{Identity: identity}),
				e.c.ParticipantConversations(ctx, testIS, Subject{Address: address}),
			} {
				_, err := collect(seq)
				if err == nil {
					t.Fatal("no error")
				}
				errs = append(errs, err.Error(), fmt.Sprintf("%+v", err))
			}
			logs := e.log.String()
			if !strings.Contains(logs, `"level":"debug"`) {
				t.Errorf("no debug logs captured")
			}
			for _, s := range secrets {
				for _, out := range append(errs, logs) {
					if strings.Contains(out, s) {
						t.Errorf("%q revealed in %s", s, out)
					}
				}
			}
			for _, out := range errs {
				if strings.Contains(out, "http://") {
					t.Errorf("URL in error: %s", out)
				}
			}
		})
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(503)
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL, Credentials: Credentials{AccountSID: testSID, AuthToken: testToken}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = collect(c.Services(ctx))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v after cancel", d)
	}
	if c.Stats().Requests != 1 {
		t.Errorf("stats = %+v", c.Stats())
	}
}

func TestCancelledBeforeStart(t *testing.T) {
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) { t.Error("unexpected request") })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := collect(e.c.Services(ctx)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if _, err := collect(e.c.Participants(ctx, testIS, testCH)); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestRequestTimeoutRetried(t *testing.T) {
	var calls atomic.Int32
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		writeJSON(w, 200, listBody("services", []M{{"sid": "ok"}}, ""))
	}, func(c *Config) { c.RequestTimeout = 100 * time.Millisecond })
	got, err := collect(e.c.Services(context.Background()))
	if err != nil || sids(got) != "ok" || e.c.Stats().Retries != 1 {
		t.Fatalf("got %v, %v, %+v", got, err, e.c.Stats())
	}
	// The retry says why: the attempt timed out.
	if !strings.Contains(e.log.String(), `"reason":"timeout"`) {
		fixedBug(t, "attempt() rebuilds transport errors with errors.New(scrubbed text), losing context.DeadlineExceeded",
			"retry reason is not timeout: %s", e.log)
	}
}

func TestConcurrencyCap(t *testing.T) {
	var inFlight, peak atomic.Int32
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		if strings.HasSuffix(r.URL.Path, "/Participants") {
			writeJSON(w, 200, listBody("participants", []M{{"sid": "x"}}, ""))
			return
		}
		writeJSON(w, 200, listBody("conversations", []M{{"sid": "x"}}, ""))
	}, func(c *Config) { c.Concurrency = 3 })
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = collect(e.c.Conversations(context.Background(), testIS, ""))
			} else {
				_, err = collect(e.c.Participants(context.Background(), testIS, testCH))
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak in flight = %d, want 3 (at most)", p)
	}
	if st := e.c.Stats(); st.Requests != 12 {
		t.Errorf("stats = %+v", st)
	}
}
