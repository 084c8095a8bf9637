package extract

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDecodePage checks the shape of a list page that is trusted, without
// a server: each refusal is an *UntrustedError (invalid JSON is a
// decodeError, retried as a transient failure), and a refused page holds
// no memory.
func TestDecodePage(t *testing.T) {
	c, err := New(Config{Credentials: Credentials{AccountSID: testSID, AuthToken: testToken}})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://conversations.twilio.com/v1/Services?PageSize=100")
	r := c.newRequest(u, 1, prioFirstPage)
	cases := []struct {
		name, body string
		items      int
		next       string
		untrusted  string // substring of the UntrustedError's reason
		invalid    bool   // a decodeError
	}{
		{"ok", `{"meta": {"key": "services", "next_page_url": "https://h/n"}, "services": [{"a": 1}]}`, 1, "https://h/n", "", false},
		{"ok last", `{"services": [{}, {}], "meta": {"key": "services", "next_page_url": null}}`, 2, "", "", false},
		{"ok empty last", `{"services": [], "meta": {"key": "services", "next_page_url": null}}`, 0, "", "", false},
		{"no next_page_url", `{"services": [{}], "meta": {"key": "services"}}`, 0, "", "meta has no next_page_url", false},
		{"meta.key of another list", `{"meta": {"key": "users"}, "services": [{}]}`, 0, "", `meta.key is "users", not "services"`, false},
		{"meta.key missing", `{"meta": {}, "services": [{}]}`, 0, "", "meta.key is missing", false},
		{"meta.key a number", `{"meta": {"key": 5}, "services": [{}]}`, 0, "", "meta.key is number", false},
		{"meta.key long", `{"meta": {"key": "` + strings.Repeat("k", 100) + `"}, "services": [{}]}`, 0, "", `"` + strings.Repeat("k", 40) + `..."`, false},
		{"no meta", `{"services": [{}]}`, 0, "", "no meta object", false},
		{"meta null", `{"meta": null, "services": [{}]}`, 0, "", "no meta object", false},
		{"meta a string", `{"meta": "services", "services": [{}]}`, 0, "", "no meta object", false},
		{"missing list", `{"meta": {"key": "services"}}`, 0, "", `no "services" array`, false},
		{"list an object", `{"meta": {"key": "services"}, "services": {}}`, 0, "", `no "services" array`, false},
		{"list null", `{"meta": {"key": "services"}, "services": null}`, 0, "", `no "services" array`, false},
		{"null member", `{"meta": {"key": "services"}, "services": [{}, null]}`, 0, "", "member 1 of the \"services\" list is null", false},
		{"string member", `{"meta": {"key": "services"}, "services": ["IS1"]}`, 0, "", `member 0 of the "services" list is "IS1"`, false},
		{"number member", `{"meta": {"key": "services"}, "services": [{}, {}, 1]}`, 0, "", "member 2 of the \"services\" list is number", false},
		{"array member", `{"meta": {"key": "services"}, "services": [[{}]]}`, 0, "", "is array", false},
		{"next_page_url a number", `{"meta": {"key": "services", "next_page_url": 2}, "services": [{}]}`, 0, "", "next_page_url is number", false},
		{"next_page_url an object", `{"meta": {"key": "services", "next_page_url": {}}, "services": [{}]}`, 0, "", "next_page_url is object", false},
		{"next_page_url false", `{"meta": {"key": "services", "next_page_url": false}, "services": [{}]}`, 0, "", "next_page_url is false", false},
		{"page an array", `[{"meta": {"key": "services"}, "services": []}]`, 0, "", "is a JSON array, not an object", false},
		{"page a string", `"services"`, 0, "", "is a JSON string", false},
		{"syntax", `{"services": [`, 0, "", "", true},
		{"HTML", `<html>maintenance</html>`, 0, "", "", true},
		{"empty", ``, 0, "", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pg, err := c.decodePage([]byte(tc.body), servicesList, r, 1)
			var ue *UntrustedError
			var de *decodeError
			switch {
			case tc.untrusted != "":
				if !errors.As(err, &ue) || !errors.Is(err, ErrUntrusted) || !strings.Contains(ue.Reason, tc.untrusted) {
					t.Errorf("err = %v, want an untrustworthy answer: %s", err, tc.untrusted)
				}
				if ue != nil && (ue.Method != "GET" || ue.Path != "/v1/Services") {
					t.Errorf("UntrustedError = %+v", ue)
				}
			case tc.invalid:
				if !errors.As(err, &de) || errors.Is(err, ErrUntrusted) {
					t.Errorf("err = %v (%T), want a decodeError", err, err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if len(pg.Items) != tc.items || pg.Next != tc.next || pg.Bytes != int64(len(tc.body)) {
					t.Errorf("page = %d items, next %q, %d bytes", len(pg.Items), pg.Next, pg.Bytes)
				}
				if held := c.Stats().MemoryHeld; held != int64(len(tc.body))*decodedFactor {
					t.Errorf("held = %d, want %d", held, len(tc.body)*decodedFactor)
				}
				pg.Release()
			}
			if err != nil && pg.Page != nil {
				t.Errorf("a page came with the error")
			}
			if held := c.Stats().MemoryHeld; held != 0 {
				t.Errorf("held = %d after the page, want 0", held)
			}
		})
	}
}

// bugNilCode: newAPIError called Int() on v.Get("code") and v.Get("status")
// without checking for nil; fastjson's (*Value).Int panics on a nil value,
// so any non-2xx JSON object without "code" or "status" crashed the run.
const bugNilCode = `newAPIError panics on an error JSON without "code" or "status"`

// collectRecover is collect, turning a panic of the walk into a value.
func collectRecover(seq iter.Seq2[PageOf, error]) (objs []Object, panicked any, err error) {
	defer func() { panicked = recover() }()
	objs, err = collect(seq)
	return objs, nil, err
}

// pageOfSize returns a services page with one member padded so that the
// body is exactly n bytes.
func pageOfSize(n int) []byte {
	b := listBody("services", []M{{"sid": "a", "pad": ""}}, "")
	return listBody("services", []M{{"sid": "a", "pad": strings.Repeat("x", n-len(b))}}, "")
}

// TestUntrustedAnswers: an answer that cannot be trusted to be the whole
// truth fails the walk with an error matching ErrUntrusted, never a
// shorter list. Checked when the page is decoded (the page's own shape, a
// 404 that is not Twilio's, a body over maxPageBytes), it is retried
// untrustedRetries times whatever MaxRetries is (8 here); checked by the
// walk (a token cycle, a list longer than Twilio allows), the walk ends
// at once: asking again cannot change them.
func TestUntrustedAnswers(t *testing.T) {
	type handler func(w http.ResponseWriter, r *http.Request, self string, n int)
	const decoded = 4 // attempts of an answer refused at decoding: retried 3 times, as documented
	always := func(status int, body string) handler {
		return func(w http.ResponseWriter, r *http.Request, self string, n int) { writeJSON(w, status, []byte(body)) }
	}
	html404 := func(w http.ResponseWriter, r *http.Request, self string, n int) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(404)
		_, _ = w.Write([]byte("<html><body>404 Not Found (nginx)</body></html>"))
	}
	// pages serves the services list as the given pages, page i at
	// /v1/Services?Page=i; a page with more (true) points to the next.
	type pg struct {
		items []M
		next  string // "" for the next page in order; "-" for none
	}
	pages := func(ps ...pg) handler {
		return func(w http.ResponseWriter, r *http.Request, self string, n int) {
			i := 0
			fmt.Sscan(r.URL.Query().Get("Page"), &i)
			p := ps[min(i, len(ps)-1)]
			next := self + "/v1/Services?Page=" + fmt.Sprint(i+1)
			switch p.next {
			case "-":
				next = ""
			case "":
			default:
				next = self + p.next
			}
			writeJSON(w, 200, listBody("services", p.items, next))
		}
	}
	oneItem := []M{{"sid": "x"}}
	participants := func(c *Client) iter.Seq2[PageOf, error] { return c.Participants(context.Background(), testIS, testCH) }
	userConversations := func(c *Client) iter.Seq2[PageOf, error] {
		return c.UserConversations(context.Background(), testIS, testUS)
	}
	conversations := func(c *Client) iter.Seq2[PageOf, error] { return c.Conversations(context.Background(), testIS, "") }
	// long serves a list of total members under key, 100 a page.
	long := func(key string, total int) handler {
		return func(w http.ResponseWriter, r *http.Request, self string, n int) {
			i := 0
			fmt.Sscan(r.URL.Query().Get("Page"), &i)
			k := min(100, total-100*i)
			next := ""
			if 100*(i+1) < total {
				next = self + r.URL.Path + "?Page=" + fmt.Sprint(i+1)
			}
			writeJSON(w, 200, listBody(key, members(fmt.Sprint("m", i, "-"), k), next))
		}
	}
	onePage := func(key string, k int) handler {
		return func(w http.ResponseWriter, r *http.Request, self string, n int) {
			writeJSON(w, 200, listBody(key, members("m", k), ""))
		}
	}

	cases := []struct {
		name     string
		call     func(c *Client) iter.Seq2[PageOf, error] // nil: Services
		h        handler
		requests int    // requests the server sees
		items    int    // members handed out before the error
		target   error  // nil: the walk succeeds
		reason   string // in the error
		bug      string // a known bug this case finds (see knownBug)
	}{
		// Refused when decoded: retried, then returned.
		{"meta.key of another list", nil, always(200, `{"meta": {"key": "users", "next_page_url": null}, "services": [{"sid": "a"}]}`), decoded, 0, ErrUntrusted, "page is of another list", ""},
		{"a page of another list", nil, always(200, string(listBody("users", oneItem, ""))), decoded, 0, ErrUntrusted, `meta.key is "users"`, ""},
		{"null member", nil, always(200, `{"meta": {"key": "services"}, "services": [{"sid": "a"}, null]}`), decoded, 0, ErrUntrusted, "is null", ""},
		{"string member", nil, always(200, `{"meta": {"key": "services"}, "services": ["a"]}`), decoded, 0, ErrUntrusted, "not an object", ""},
		{"missing meta", nil, always(200, `{"services": [{"sid": "a"}]}`), decoded, 0, ErrUntrusted, "no meta object", ""},
		{"non-array list", nil, always(200, `{"meta": {"key": "services"}, "services": {"sid": "a"}}`), decoded, 0, ErrUntrusted, `no "services" array`, ""},
		{"next_page_url a number", nil, always(200, `{"meta": {"key": "services", "next_page_url": 2}, "services": [{"sid": "a"}]}`), decoded, 0, ErrUntrusted, "next_page_url is number", ""},
		{"404 with an HTML body", nil, html404, decoded, 0, ErrUntrusted, "404 without Twilio's error JSON", ""},
		{"404 JSON of another status", nil, always(404, string(twilioError(200, 20404, "x"))), decoded, 0, ErrUntrusted, "404 without", ""},
		{"404 JSON without a code", nil, always(404, `{"message": "Not Found", "status": 404}`), decoded, 0, ErrUntrusted, "404 without", bugNilCode},
		{"404 JSON without a status", nil, always(404, `{"code": 20404, "message": "Not Found"}`), decoded, 0, ErrUntrusted, "404 without", bugNilCode},
		{"404 JSON with a string code", nil, always(404, `{"code": "20404", "message": "Not Found", "status": 404}`), decoded, 0, ErrUntrusted, "404 without", ""},
		{"Twilio 404", nil, always(404, string(twilioError(404, 20404, "The requested resource was not found"))), 1, 0, ErrNotFound, "404 (code 20404)", ""},
		{"body over 8 MiB", nil, always(200, string(pageOfSize(maxPageBytes+1))), decoded, 0, ErrUntrusted, "larger than 8 MiB", ""},
		{"error body over 8 MiB", nil, always(503, strings.Repeat(" ", maxPageBytes+1)), decoded, 0, ErrUntrusted, "larger than 8 MiB", ""},
		{"body of exactly 8 MiB", nil, always(200, string(pageOfSize(maxPageBytes))), 1, 1, nil, "", ""},
		{"untrustworthy, then good", nil, func(w http.ResponseWriter, r *http.Request, self string, n int) {
			if n < decoded {
				writeJSON(w, 200, listBody("users", oneItem, ""))
				return
			}
			writeJSON(w, 200, listBody("services", oneItem, ""))
		}, decoded, 1, nil, "", ""},
		{"untrustworthy on page 2", nil, func(w http.ResponseWriter, r *http.Request, self string, n int) {
			if n == 1 {
				writeJSON(w, 200, listBody("services", oneItem, self+"/v1/Services?Page=1"))
				return
			}
			writeJSON(w, 200, []byte(`{"meta": {"key": "services"}, "services": [null]}`))
		}, 1 + decoded, 1, ErrUntrusted, "is null", ""},

		// Refused at decoding, like the answers above: retried, then refused.
		{"empty page that is not the last", nil, pages(pg{oneItem, ""}, pg{nil, ""}, pg{oneItem, "-"}), 1 + decoded, 1, ErrUntrusted, "an empty page that is not the last", ""},
		{"empty first page that is not the last", nil, pages(pg{nil, ""}, pg{oneItem, "-"}), decoded, 0, ErrUntrusted, "an empty page that is not the last", ""},

		// Refused by the walk: the page is not handed out and the walk ends.
		{"empty last page", nil, pages(pg{oneItem, ""}, pg{nil, "-"}), 2, 1, nil, "", ""},
		{"token cycle to the first page", nil, pages(pg{oneItem, ""}, pg{oneItem, "/v1/Services?PageSize=100"}), 2, 1, ErrUntrusted, "page token cycle", ""},
		{"token cycle among later pages", nil, pages(pg{oneItem, ""}, pg{oneItem, ""}, pg{oneItem, "/v1/Services?Page=1"}), 3, 2, ErrUntrusted, "page token cycle", ""},
		{"a page pointing to itself", nil, pages(pg{oneItem, ""}, pg{oneItem, "/v1/Services?Page=1"}), 2, 1, ErrUntrusted, "page token cycle", ""},
		{"1,001 participants", participants, long("participants", 1001), 11, 1000, ErrUntrusted, "longer than Twilio allows (1000)", ""},
		{"1,100 participants", participants, long("participants", 1100), 11, 1000, ErrUntrusted, "longer than Twilio allows (1000)", ""},
		{"1,001 participants on one page", participants, onePage("participants", 1001), 1, 0, ErrUntrusted, "longer than Twilio allows", ""},
		{"1,000 participants", participants, long("participants", 1000), 10, 1000, nil, "", ""},
		{"1,001 user conversations", userConversations, long("conversations", 1001), 11, 1000, ErrUntrusted, "longer than Twilio allows (1000)", ""},
		{"1,000 user conversations", userConversations, long("conversations", 1000), 10, 1000, nil, "", ""},
		{"1,100 conversations of a service", conversations, long("conversations", 1100), 11, 1100, nil, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			var self string
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				tc.h(w, r, self, int(calls.Add(1)))
			}, func(c *Config) { c.MaxRetries, c.BaseBackoff, c.MaxBackoff = 8, time.Millisecond, time.Millisecond })
			self = e.srv.URL
			call := tc.call
			if call == nil {
				call = func(c *Client) iter.Seq2[PageOf, error] { return c.Services(context.Background()) }
			}
			got, panicked, err := collectRecover(call(e.c))
			if panicked != nil {
				if tc.bug != "" {
					fixedBug(t, tc.bug, "the walk panicked: %v", panicked)
				}
				t.Fatalf("the walk panicked: %v", panicked)
			}
			if n := int(calls.Load()); n != tc.requests || int(e.c.Stats().Requests) != tc.requests {
				t.Errorf("server saw %d requests, client sent %d; want %d", n, e.c.Stats().Requests, tc.requests)
			}
			if len(got) != tc.items {
				t.Errorf("%d members handed out, want %d", len(got), tc.items)
			}
			if tc.target == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, tc.target) || !strings.Contains(fmt.Sprint(err), tc.reason) {
				t.Fatalf("err = %v, want %v with %q", err, tc.target, tc.reason)
			}
			for _, other := range []error{ErrNotFound, ErrUntrusted, ErrForeignHost, ErrRateLimited, ErrUnauthorized} {
				if other != tc.target && errors.Is(err, other) {
					t.Errorf("%v unexpectedly is %v", err, other)
				}
			}
			if strings.Contains(err.Error(), "http://") || strings.Contains(err.Error(), "Page=") {
				t.Errorf("error holds a URL: %v", err)
			}
		})
	}
}

// TestUntrustedRetriesWithinMaxRetries: untrustworthy answers are retried
// at most untrustedRetries times, and no more than MaxRetries allows.
func TestUntrustedRetriesWithinMaxRetries(t *testing.T) {
	for _, tc := range []struct{ maxRetries, requests int }{{-1, 1}, {1, 2}, {3, 4}, {20, 1 + untrustedRetries}} {
		t.Run(fmt.Sprint(tc.maxRetries), func(t *testing.T) {
			var calls atomic.Int32
			e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				writeJSON(w, 200, listBody("users", members("u", 1), ""))
			}, func(c *Config) { c.MaxRetries = tc.maxRetries })
			_, err := collect(e.c.Services(context.Background()))
			if !errors.Is(err, ErrUntrusted) {
				t.Fatalf("err = %v", err)
			}
			if n := int(calls.Load()); n != tc.requests || len(e.sleep.get()) != tc.requests-1 {
				t.Errorf("server saw %d requests after %d sleeps, want %d", n, len(e.sleep.get()), tc.requests)
			}
			if tc.requests > 1 && !strings.Contains(err.Error(), fmt.Sprintf("giving up after %d attempts", tc.requests)) {
				t.Errorf("error %q does not say how many attempts", err)
			}
		})
	}
}

// TestResumeFrom: a walk yields with each page where it would go on from
// (PageOf.Next); Users and Conversations resume from it, fetching that URL
// as given and nothing before it. A resume URL on another host is refused
// before any request.
func TestResumeFrom(t *testing.T) {
	usersPath := "/v1/Services/" + testIS + "/Users"
	convPath := "/v1/Services/" + testIS + "/Conversations"
	var (
		mu   sync.Mutex
		seen []string
		self string
	)
	requests := func(reset bool) []string {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		if reset {
			seen = nil
		}
		return out
	}
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.RequestURI())
		mu.Unlock()
		key := "users"
		if r.URL.Path == convPath {
			key = "conversations"
		}
		i := 0
		fmt.Sscan(r.URL.Query().Get("Page"), &i)
		next := ""
		if i < 2 {
			next = fmt.Sprintf("%s%s?PageSize=50&Page=%d&PageToken=PT%d", self, r.URL.Path, i+1, i+1)
		}
		writeJSON(w, 200, listBody(key, members(fmt.Sprint("p", i, "-"), 2), next))
	})
	self = e.srv.URL
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		path string
		walk func(from string) iter.Seq2[PageOf, error]
	}{
		{"Users", usersPath, func(from string) iter.Seq2[PageOf, error] { return e.c.Users(ctx, testIS, from) }},
		{"Conversations", convPath, func(from string) iter.Seq2[PageOf, error] { return e.c.Conversations(ctx, testIS, from) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Stop after the first page, as a run interrupted there would,
			// keeping where it would have gone on from.
			var from string
			for pg, err := range tc.walk("") {
				if err != nil {
					t.Fatal(err)
				}
				from = pg.Next
				pg.Release()
				break
			}
			if want := self + tc.path + "?PageSize=50&Page=1&PageToken=PT1"; from != want {
				t.Fatalf("Next = %q, want %q", from, want)
			}
			requests(true)
			var nexts []string
			var got []Object
			for pg, err := range tc.walk(from) {
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range pg.Items {
					got = append(got, clone(o))
				}
				nexts = append(nexts, pg.Next)
				pg.Release()
			}
			if s := sids(got); s != "p1-0,p1-1,p2-0,p2-1" {
				t.Errorf("resumed walk = %s", s)
			}
			want := []string{tc.path + "?PageSize=50&Page=1&PageToken=PT1", tc.path + "?PageSize=50&Page=2&PageToken=PT2"}
			if got := requests(false); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("requests = %v, want %v", got, want)
			}
			if len(nexts) != 2 || nexts[0] != self+want[1] || nexts[1] != "" {
				t.Errorf("Next = %q", nexts)
			}
		})
	}
	t.Run("foreign host", func(t *testing.T) {
		requests(true)
		for _, from := range []string{"https://evil.example" + usersPath + "?Page=1", strings.Replace(self, "http://", "http://u:p@", 1) + usersPath} {
			if _, err := collect(e.c.Users(ctx, testIS, from)); !errors.Is(err, ErrForeignHost) {
				t.Errorf("from %s: err = %v, want ErrForeignHost", from, err)
			}
		}
		if got := requests(false); len(got) != 0 {
			t.Errorf("requests = %v", got)
		}
	})
}
