package fakeapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/convsync/convsync/internal/oaispec"
)

// hostileLists are the list URLs (service-scoped, on the test dataset's
// second service) the hostile tests walk, with their spec paths.
type hostileList struct {
	endpoint, path, key, spec string
}

func hostileLists(ds *Dataset) []hostileList {
	svc := ds.Services()[1].SID
	busy := ds.Users(svc)[0]
	large := ds.Conversations(svc)[1]
	p := "/v1/Services/" + svc
	sp := "/v1/Services/{ChatServiceSid}"
	return []hostileList{
		{EndpointServices, "/v1/Services?PageSize=2", "services", "/v1/Services"},
		{EndpointUsers, p + "/Users?PageSize=7", "users", sp + "/Users"},
		{EndpointUserConversations, p + "/Users/" + busy.SID + "/Conversations?PageSize=7", "conversations", sp + "/Users/{UserSid}/Conversations"},
		{EndpointConversations, p + "/Conversations?PageSize=7", "conversations", sp + "/Conversations"},
		{EndpointParticipants, p + "/Conversations/" + large.SID + "/Participants?PageSize=7", "participants", sp + "/Conversations/{ConversationSid}/Participants"},
		{EndpointParticipantConversations, p + "/ParticipantConversations?Identity=" + q(busy.Identity) + "&PageSize=7", "conversations", sp + "/ParticipantConversations"},
	}
}

// specChecker validates pages against the spec when it is available (the
// hostile tests run without it, minus these checks).
type specChecker struct {
	t    *testing.T
	v    *schemaValidator
	spec map[string]any
}

func newSpecChecker(t *testing.T, base string) *specChecker {
	sc := &specChecker{t: t}
	if specPath() == "" {
		oaispec.SkipOrFail(t, oaispec.ErrNotFound)
	}
	sc.spec = loadSpec(t)
	sc.v = &schemaValidator{spec: sc.spec, base: base, regexps: map[string]*regexp.Regexp{}}
	return sc
}

// page validates a decoded page (or instance) against specPath's 200
// response schema.
func (sc *specChecker) page(specPath string, page any) {
	sc.t.Helper()
	if sc.v == nil {
		return
	}
	op := sc.spec["paths"].(map[string]any)[specPath].(map[string]any)["get"].(map[string]any)
	schema := op["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
	sc.v.errs = nil
	sc.v.check(specPath, schema, page)
	if len(sc.v.errs) > 0 {
		sc.t.Fatalf("%s: schema violations:\n%s", specPath, strings.Join(sc.v.errs, "\n"))
	}
}

// twin fetches the same path and query from a normal server, with its
// base URL rewritten to the hostile server's, for comparisons.
type twin struct {
	t                   testing.TB
	hostile, normal     *Server
	hc, nc              *apiClient
	hostileURL, normURL string
}

func newTwin(t testing.TB, f Faults) *twin {
	h := startServer(t, Options{Faults: f})
	n := startServer(t, Options{})
	return &twin{t: t, hostile: h, normal: n, hc: newClient(t, h), nc: newClient(t, n), hostileURL: h.URL(), normURL: n.URL()}
}

// pair GETs pathQuery from both servers and decodes both pages.
func (tw *twin) pair(pathQuery string) (hostile, normal map[string]any) {
	tw.t.Helper()
	hostile = tw.hc.getJSON(tw.hostileURL + pathQuery)
	status, _, body, err := tw.nc.get(tw.normURL + pathQuery)
	if err != nil || status != 200 {
		tw.t.Fatalf("normal GET %s: %d %v", pathQuery, status, err)
	}
	return hostile, decode(tw.t, bytes.ReplaceAll(body, []byte(tw.normURL), []byte(tw.hostileURL)))
}

// relative strips the server from a page URL.
func (tw *twin) relative(u string) string { return strings.TrimPrefix(u, tw.hostileURL) }

// TestHostileRows: each row-level mode changes exactly one member of every
// non-empty page (or the key, for WrongMetaKey) of the selected endpoint,
// and nothing else; other endpoints are untouched.
func TestHostileRows(t *testing.T) {
	type check func(t *testing.T, l hostileList, got, want map[string]any) bool // reports a mutation
	itemsOf := func(t *testing.T, page map[string]any, key string) []any {
		items, ok := page[key].([]any)
		if !ok {
			t.Fatalf("page has no %q array: %v", key, truncate([]byte(strings.Join(mapKeys(page), ","))))
		}
		return items
	}
	// oneDiff checks that got's members equal want's but for exactly one,
	// which fn checks; it returns that member's index.
	oneDiff := func(t *testing.T, l hostileList, got, want map[string]any, fn func(got, want any) bool) bool {
		t.Helper()
		gi, wi := itemsOf(t, got, l.key), itemsOf(t, want, l.key)
		if !reflect.DeepEqual(got["meta"], want["meta"]) {
			t.Fatalf("meta changed:\n%v\n%v", got["meta"], want["meta"])
		}
		if len(gi) != len(wi) {
			t.Fatalf("%d members, want %d", len(gi), len(wi))
		}
		diff := -1
		for i := range gi {
			if reflect.DeepEqual(gi[i], wi[i]) {
				continue
			}
			if diff >= 0 {
				t.Fatalf("members %d and %d both differ", diff, i)
			}
			diff = i
			if !fn(gi[i], wi[i]) {
				t.Fatalf("member %d: got %v, want the misbehaviour on %v", i, gi[i], wi[i])
			}
		}
		if len(wi) > 0 && diff < 0 {
			t.Fatalf("no member of %d differs", len(wi))
		}
		return diff >= 0
	}
	modes := []struct {
		name    string
		hostile Hostile
		check   check
		counter func(c HostileCounters) int64
	}{
		{"NullMember", Hostile{NullMember: true}, func(t *testing.T, l hostileList, got, want map[string]any) bool {
			return oneDiff(t, l, got, want, func(g, w any) bool { return g == nil })
		}, func(c HostileCounters) int64 { return c.NullMember }},
		{"MissingKey", Hostile{MissingKey: true}, func(t *testing.T, l hostileList, got, want map[string]any) bool {
			return oneDiff(t, l, got, want, func(g, w any) bool {
				gm, _ := g.(map[string]any)
				wm := maps0(w.(map[string]any))
				_, had := wm[KeyField(l.endpoint)]
				delete(wm, KeyField(l.endpoint))
				return had && gm != nil && reflect.DeepEqual(gm, wm)
			})
		}, func(c HostileCounters) int64 { return c.MissingKey }},
		{"NumericKey", Hostile{NumericKey: true}, func(t *testing.T, l hostileList, got, want map[string]any) bool {
			return oneDiff(t, l, got, want, func(g, w any) bool {
				gm, _ := g.(map[string]any)
				if gm == nil {
					return false
				}
				n, isNum := gm[KeyField(l.endpoint)].(json.Number)
				_, wasStr := w.(map[string]any)[KeyField(l.endpoint)].(string)
				gm, wm := maps0(gm), maps0(w.(map[string]any))
				delete(gm, KeyField(l.endpoint))
				delete(wm, KeyField(l.endpoint))
				_, intErr := n.Int64()
				return isNum && wasStr && intErr == nil && reflect.DeepEqual(gm, wm)
			})
		}, func(c HostileCounters) int64 { return c.NumericKey }},
		{"WrongMetaKey", Hostile{WrongMetaKey: true}, func(t *testing.T, l hostileList, got, want map[string]any) bool {
			other := wrongKey(l.key)
			gm, wm := maps0(got["meta"].(map[string]any)), maps0(want["meta"].(map[string]any))
			if other == l.key || gm["key"] != other || len(got) != 2 {
				t.Fatalf("meta.key %v, page keys %v; want %q and only it", gm["key"], mapKeys(got), other)
			}
			if arr, ok := got[other].([]any); !ok || len(arr) != 0 {
				t.Fatalf("%q: %v, want an empty array", other, got[other])
			}
			if _, ok := got[l.key]; ok {
				t.Fatalf("page still has %q", l.key)
			}
			delete(gm, "key")
			delete(wm, "key")
			if !reflect.DeepEqual(gm, wm) {
				t.Fatalf("meta changed beyond key:\n%v\n%v", gm, wm)
			}
			return true
		}, func(c HostileCounters) int64 { return c.WrongMetaKey }},
	}
	lists := hostileLists(testDataset())
	for _, m := range modes {
		for _, sel := range append([]string{""}, ListEndpoints...) {
			name := m.name + "/" + sel
			if sel == "" {
				name = m.name + "/every-list"
			}
			t.Run(name, func(t *testing.T) {
				h := m.hostile
				h.Endpoint = sel
				tw := newTwin(t, Faults{Seed: 4, Hostile: h})
				sc := newSpecChecker(t, tw.hostileURL)
				mutated := int64(0)
				for _, l := range lists {
					on := sel == "" || sel == l.endpoint
					next := l.path
					for pages := 0; next != "" && pages < 3; pages++ {
						got, want := tw.pair(next)
						if !on {
							if !reflect.DeepEqual(got, want) {
								t.Fatalf("%s is not selected but its page %s changed", l.endpoint, next)
							}
						} else if m.check(t, l, got, want) {
							mutated++
							// The rest is as the spec has it.
							if items, ok := got[l.key].([]any); ok {
								valid := map[string]any{"meta": got["meta"], l.key: slicesDeleteFunc(items, func(it any) bool {
									im, _ := it.(map[string]any)
									_, isStr := im[KeyField(l.endpoint)].(string)
									return !isStr
								})}
								sc.page(l.spec, valid)
							}
						}
						nu, _ := want["meta"].(map[string]any)["next_page_url"].(string)
						next = tw.relative(nu)
					}
				}
				c := tw.hostile.Counters()
				if got := m.counter(c.Hostile); got != mutated || mutated == 0 {
					t.Errorf("counter %d, pages mutated %d", got, mutated)
				}
				// Deterministic: a second server with the same seed answers the same.
				again := startServer(t, Options{Faults: Faults{Seed: 4, Hostile: h}})
				l := lists[4]
				_, _, b1, _ := tw.hc.get(tw.hostileURL + l.path)
				_, _, b2, _ := newClient(t, again).get(again.URL() + l.path)
				if !bytes.Equal(b1, bytes.ReplaceAll(b2, []byte(again.URL()), []byte(tw.hostileURL))) {
					t.Errorf("same seed, different answers:\n%s\n%s", truncate(b1), truncate(b2))
				}
			})
		}
	}
}

func mapKeys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func maps0(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func slicesDeleteFunc(items []any, del func(any) bool) []any {
	var out []any
	for _, it := range items {
		if !del(it) {
			out = append(out, it)
		}
	}
	if out == nil {
		out = []any{}
	}
	return out
}

// TestHostileHTML404: the child lists answer a proxy's HTML 404, the
// others are untouched.
func TestHostileHTML404(t *testing.T) {
	ds := testDataset()
	lists := hostileLists(ds)
	for _, sel := range []string{"", EndpointParticipants, EndpointUserConversations} {
		t.Run("select "+sel, func(t *testing.T) {
			s := startServer(t, Options{Faults: Faults{Hostile: Hostile{HTML404: true, Endpoint: sel}}})
			c := newClient(t, s)
			want404 := 0
			for _, l := range lists {
				status, h, body, err := c.get(s.URL() + l.path)
				if err != nil {
					t.Fatal(err)
				}
				on := isChildList(l.endpoint) && (sel == "" || sel == l.endpoint)
				switch {
				case on:
					want404++
					if status != 404 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || json.Valid(body) ||
						!strings.Contains(string(body), "<h1>404 Not Found</h1>") || h.Get(ConcurrentRequestsHeader) != "1" {
						t.Errorf("%s: %d %q %q", l.endpoint, status, h.Get("Content-Type"), truncate(body))
					}
					if h.Get("Content-Length") != strconv.Itoa(len(body)) {
						t.Errorf("Content-Length %s for %d bytes", h.Get("Content-Length"), len(body))
					}
				case status != 200 || h.Get("Content-Type") != "application/json" || !json.Valid(body):
					t.Errorf("%s (not selected): %d %q", l.endpoint, status, h.Get("Content-Type"))
				}
			}
			if c := s.Counters(); c.Hostile.HTML404 != int64(want404) || c.Status404 != int64(want404) || want404 == 0 {
				t.Errorf("counters %+v, want %d HTML 404s", c.Hostile, want404)
			}
		})
	}
}

// fnv64 hashes a string, so that sets of many strings stay small.
func fnv64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// TestHostileEndless: endless lists go on for 2,000 pages with new tokens,
// repeating the first page's rows or bringing fresh ones, while the
// server's memory stays flat.
func TestHostileEndless(t *testing.T) {
	ds := testDataset()
	svc := ds.Services()[1].SID
	large := ds.Conversations(svc)[1]
	var initializing Conversation
	for _, cv := range ds.Conversations(svc) {
		if cv.State == StateInitializing {
			initializing = cv
			break
		}
	}
	const pages, size = 2000, 5
	for _, tc := range []struct {
		name string
		mode EndlessMode
		conv Conversation
	}{
		{"repeat", EndlessRepeat, large},
		{"fresh", EndlessFresh, large},
		{"fresh from an empty list", EndlessFresh, initializing},
		{"repeat an empty list", EndlessRepeat, initializing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tw := newTwin(t, Faults{Seed: 2, Hostile: Hostile{EndlessList: tc.mode, Endpoint: EndpointParticipants}})
			sc := newSpecChecker(t, tw.hostileURL)
			path := "/v1/Services/" + svc + "/Conversations/" + tc.conv.SID + "/Participants?PageSize=" + strconv.Itoa(size)
			real := ds.Participants(svc, tc.conv.SID)
			first, want := tw.pair(path)
			if (tc.mode == EndlessRepeat || len(real) >= size) && !reflect.DeepEqual(first["participants"], want["participants"]) {
				t.Fatalf("first page differs from the real list's")
			}
			// Other lists still end.
			if conv := tw.hc.walk(tw.hostileURL+"/v1/Services/"+svc+"/Conversations", "conversations", nil); len(conv) != len(ds.Conversations(svc)) {
				t.Fatalf("conversations: %d rows", len(conv))
			}
			tw.hostile.ResetCounters()
			tokens := make(map[uint64]bool, pages)
			sids := make(map[uint64]bool, pages*size)
			var firstSIDs []string
			var heapAt100 uint64
			hc := &http.Client{}
			cr := tw.hostile.Credentials()
			next := tw.hostileURL + path
			for p := 0; p < pages; p++ {
				req, _ := http.NewRequest(http.MethodGet, next, nil)
				req.SetBasicAuth(cr.AccountSID, cr.AuthToken)
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var page struct {
					Participants []map[string]any `json:"participants"`
					Meta         map[string]any   `json:"meta"`
				}
				err = json.NewDecoder(resp.Body).Decode(&page)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("page %d: %d %v", p, resp.StatusCode, err)
				}
				nu, _ := page.Meta["next_page_url"].(string)
				u, err := url.Parse(nu)
				if err != nil || nu == "" {
					t.Fatalf("page %d: next_page_url %v", p, page.Meta["next_page_url"])
				}
				tok := u.Query().Get("PageToken")
				if tok == "" || tokens[fnv64(tok)] {
					t.Fatalf("page %d: token %q empty or seen before", p, tok)
				}
				tokens[fnv64(tok)] = true
				var pageSIDs []string
				for _, r := range page.Participants {
					pageSIDs = append(pageSIDs, r["sid"].(string))
				}
				switch {
				case p == 0:
					firstSIDs = pageSIDs
					for i, sid := range pageSIDs[:min(len(pageSIDs), len(real))] {
						if sid != real[i].SID {
							t.Fatalf("page 0 row %d: %s, want the real %s", i, sid, real[i].SID)
						}
					}
				case tc.mode == EndlessRepeat:
					if strings.Join(pageSIDs, ",") != strings.Join(firstSIDs, ",") {
						t.Fatalf("page %d rows %v, want the first page's %v", p, pageSIDs, firstSIDs)
					}
				}
				if tc.mode == EndlessFresh {
					if len(pageSIDs) != size {
						t.Fatalf("page %d: %d rows", p, len(pageSIDs))
					}
					for _, sid := range pageSIDs {
						if sids[fnv64(sid)] || !regexp.MustCompile(`^MB[0-9a-f]{32}$`).MatchString(sid) {
							t.Fatalf("page %d: SID %q seen before or malformed", p, sid)
						}
						sids[fnv64(sid)] = true
					}
				}
				if p < 20 { // spec-shaped rows and meta
					var raw map[string]any
					rb, _ := json.Marshal(map[string]any{"participants": page.Participants, "meta": page.Meta})
					raw = decode(t, rb)
					sc.page("/v1/Services/{ChatServiceSid}/Conversations/{ConversationSid}/Participants", raw)
				}
				if p == 100 {
					heapAt100 = heapAfterGC()
				}
				next = nu
			}
			heapEnd := heapAfterGC()
			growth := int64(heapEnd) - int64(heapAt100)
			t.Logf("heap after 100 pages %d KB, after %d pages %d KB", heapAt100>>10, pages, heapEnd>>10)
			if growth > 2<<20 {
				t.Errorf("heap grew by %d KB over %d endless pages", growth>>10, pages-100)
			}
			if c := tw.hostile.Counters(); c.Hostile.EndlessPages != pages || c.ByEndpoint[EndpointParticipants] != pages {
				t.Errorf("EndlessPages %d, participants requests %d, want %d", c.Hostile.EndlessPages, c.ByEndpoint[EndpointParticipants], pages)
			}
		})
	}
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestHostileTokenCycle: the last page's next_page_url points back to the
// page before it; a single page points to itself.
func TestHostileTokenCycle(t *testing.T) {
	ds := testDataset()
	svc := ds.Services()[1].SID
	var small Conversation
	for _, cv := range ds.Conversations(svc) {
		if n := len(ds.Participants(svc, cv.SID)); n > 1 && n < 50 {
			small = cv
			break
		}
	}
	for _, tc := range []struct {
		name, path string
		rows       int
		pages      int
	}{
		{"participants", "/v1/Services/" + svc + "/Conversations/" + ds.Conversations(svc)[1].SID + "/Participants?PageSize=50", 230, 5},
		{"participants, even pages", "/v1/Services/" + svc + "/Conversations/" + ds.Conversations(svc)[1].SID + "/Participants?PageSize=46", 230, 5},
		{"one page", "/v1/Services/" + svc + "/Conversations/" + small.SID + "/Participants?PageSize=50", len(ds.Participants(svc, small.SID)), 1},
		{"conversations", "/v1/Services/" + svc + "/Conversations?PageSize=60", 130, 3},
		{"two pages", "/v1/Services/" + svc + "/Conversations?PageSize=100", 130, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{Faults: Faults{Hostile: Hostile{TokenCycle: true}}})
			c := newClient(t, s)
			seen := map[string]int{} // URL -> page index
			var pageURLs []string
			rows := 0
			next := s.URL() + tc.path
			for {
				if i, ok := seen[next]; ok {
					if len(pageURLs) != tc.pages || rows != tc.rows {
						t.Fatalf("cycle after %d pages and %d rows, want %d and %d", len(pageURLs), rows, tc.pages, tc.rows)
					}
					if want := max(tc.pages-2, 0); i != want {
						t.Errorf("the last page points back to page %d, want %d", i, want)
					}
					break
				}
				if len(pageURLs) > tc.pages {
					t.Fatalf("no cycle after %d pages", len(pageURLs))
				}
				page := c.getJSON(next)
				meta := page["meta"].(map[string]any)
				key := meta["key"].(string)
				rows += len(page[key].([]any))
				self := meta["url"].(string) // canonical: the first page's has Page=0
				if len(pageURLs) > 0 && self != next {
					t.Fatalf("meta.url %v, requested %s", self, next)
				}
				seen[self] = len(pageURLs)
				pageURLs = append(pageURLs, self)
				next, _ = meta["next_page_url"].(string)
				if next == "" {
					t.Fatalf("page %d ends the list", len(pageURLs)-1)
				}
			}
			if got := s.Counters().Hostile.TokenCycle; got != 1 {
				t.Errorf("TokenCycle counter %d, want 1", got)
			}
		})
	}
}

// TestHostileOversized: pages are padded to exactly the configured size,
// inside a string field of the first row (or after the JSON of an empty
// page), streamed rather than held.
func TestHostileOversized(t *testing.T) {
	ds := testDataset()
	svc := ds.Services()[1].SID
	var initializing Conversation
	for _, cv := range ds.Conversations(svc) {
		if cv.State == StateInitializing {
			initializing = cv
			break
		}
	}
	const target = 3_000_000
	lists := hostileLists(ds)
	lists = append(lists, hostileList{EndpointParticipants, "/v1/Services/" + svc + "/Conversations/" + initializing.SID + "/Participants", "participants",
		"/v1/Services/{ChatServiceSid}/Conversations/{ConversationSid}/Participants"})
	tw := newTwin(t, Faults{Hostile: Hostile{Oversized: target}})
	sc := newSpecChecker(t, tw.hostileURL)
	for _, l := range lists {
		t.Run(l.endpoint+" "+l.path[strings.LastIndex(l.path, "/"):], func(t *testing.T) {
			status, h, body, err := tw.hc.get(tw.hostileURL + l.path)
			if err != nil || status != 200 || len(body) != target || h.Get("Content-Length") != strconv.Itoa(target) {
				t.Fatalf("status %d, %d bytes (Content-Length %s), err %v; want %d bytes", status, len(body), h.Get("Content-Length"), err, target)
			}
			got := decode(t, body)
			_, want := tw.pair(l.path)
			wi := want[l.key].([]any)
			if len(wi) == 0 {
				_, _, nb, _ := tw.nc.get(tw.normURL + l.path)
				nb = bytes.ReplaceAll(nb, []byte(tw.normURL), []byte(tw.hostileURL))
				if !bytes.Equal(bytes.TrimRight(body, " "), nb) {
					t.Errorf("empty page: body is not the normal one plus whitespace")
				}
				return
			}
			_, _, normalBody, _ := tw.nc.get(tw.normURL + l.path)
			minPad := target - len(normalBody) - 64
			field := padField(l.endpoint)
			gi := got[l.key].([]any)
			first := gi[0].(map[string]any)
			pad := first[field].(string)
			if field != "friendly_name" {
				var a struct{ Pad string }
				if err := json.Unmarshal([]byte(pad), &a); err != nil || strings.Trim(a.Pad, "x") != "" || len(a.Pad) < minPad {
					t.Errorf("%s is not {\"pad\":\"xxx…\"} of about %d bytes: %v %q", field, target, err, truncate([]byte(pad)))
				}
			} else if strings.Trim(pad, "x") != "" || len(pad) < minPad {
				t.Errorf("%s is not a long run of x", field)
			}
			first[field] = wi[0].(map[string]any)[field]
			if !reflect.DeepEqual(got, want) {
				t.Errorf("beyond the padded field, the page differs")
			}
			first[field] = pad
			sc.page(l.spec, got)
		})
	}
	t.Run("streamed", func(t *testing.T) {
		const big = 128 << 20
		s := startServer(t, Options{Faults: Faults{Hostile: Hostile{Oversized: big, Endpoint: EndpointUsers}}})
		cr := s.Credentials()
		req, _ := http.NewRequest(http.MethodGet, s.URL()+"/v1/Users", nil)
		req.SetBasicAuth(cr.AccountSID, cr.AuthToken)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%d MB served with %d KB allocated", n>>20, alloc>>10)
		if err != nil || n != big || resp.ContentLength != big {
			t.Fatalf("read %d bytes (Content-Length %d), %v", n, resp.ContentLength, err)
		}
		if alloc > 16<<20 {
			t.Errorf("serving %d MB allocated %d MB: not streamed", big>>20, alloc>>20)
		}
		if c := s.Counters(); c.Hostile.Oversized != 1 {
			t.Errorf("Oversized counter %d", c.Hostile.Oversized)
		}
	})
}

// TestHostileEchoAuthorization: Twilio error responses carry the
// credentials in every form; without the mode they do not.
func TestHostileEchoAuthorization(t *testing.T) {
	ds := testDataset()
	def := DefaultCredentials(ds)
	for _, tc := range []struct {
		name         string
		faults       Faults
		path         string
		user, secret string
		status, code int
		echo         bool
	}{
		{"500, auth token", Faults{Rate500: 1, Hostile: Hostile{EchoAuthorization: true}}, "/v1/Services", def.AccountSID, def.AuthToken, 500, 20500, true},
		{"500, API key", Faults{Rate500: 1, Hostile: Hostile{EchoAuthorization: true}}, "/v1/Services", def.APIKeySID, def.APIKeySecret, 500, 20500, true},
		{"400", Faults{Hostile: Hostile{EchoAuthorization: true}}, "/v1/Services?PageSize=x", def.AccountSID, def.AuthToken, 400, 20001, true},
		{"401, wrong secret", Faults{Hostile: Hostile{EchoAuthorization: true}}, "/v1/Services", def.AccountSID, "not-the-token-0123", 401, 20003, true},
		{"404", Faults{Hostile: Hostile{EchoAuthorization: true}}, "/v1/Nope", def.AccountSID, def.AuthToken, 404, 20404, true},
		{"429", Faults{Rate429: 1, Hostile: Hostile{EchoAuthorization: true}}, "/v1/Services", def.AccountSID, def.AuthToken, 429, 20429, true},
		{"other endpoint selected", Faults{Rate500: 1, Hostile: Hostile{EchoAuthorization: true, Endpoint: EndpointUsers}}, "/v1/Services", def.AccountSID, def.AuthToken, 500, 20500, false},
		{"selected endpoint", Faults{Rate500: 1, Hostile: Hostile{EchoAuthorization: true, Endpoint: EndpointUsers}}, "/v1/Users", def.AccountSID, def.AuthToken, 500, 20500, true},
		{"off", Faults{Rate500: 1}, "/v1/Services", def.AccountSID, def.AuthToken, 500, 20500, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{Faults: tc.faults})
			c := &apiClient{t: t, hc: &http.Client{}, user: tc.user, pass: tc.secret}
			status, h, body, err := c.get(s.URL() + tc.path)
			if err != nil || status != tc.status || h.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d %q, err %v", status, h.Get("Content-Type"), err)
			}
			e := decode(t, body)
			if len(e) != 4 || num(e["code"]) != tc.code || num(e["status"]) != tc.status || e["more_info"] == nil {
				t.Fatalf("not Twilio's error JSON: %v", e)
			}
			msg := e["message"].(string)
			b64 := base64.StdEncoding.EncodeToString([]byte(tc.user + ":" + tc.secret))
			forms := []string{tc.secret, b64, "Basic " + b64, tc.user + ":" + tc.secret}
			for _, f := range forms {
				if strings.Contains(msg, f) != tc.echo || bytes.Contains(body, []byte(f)) != tc.echo {
					t.Errorf("message %q: contains %q = %v, want %v", msg, f, !tc.echo, tc.echo)
				}
			}
			want := int64(0)
			if tc.echo {
				want = 1
			}
			if got := s.Counters().Hostile.EchoAuthorization; got != want {
				t.Errorf("EchoAuthorization counter %d, want %d", got, want)
			}
		})
	}
	// No Authorization header: nothing to echo.
	s := startServer(t, Options{Faults: Faults{Hostile: Hostile{EchoAuthorization: true}}})
	status, _, body, _ := (&apiClient{t: t, hc: http.DefaultClient}).get(s.URL() + "/v1/Services")
	if status != 401 || decode(t, body)["message"] != "Authenticate" || s.Counters().Hostile.EchoAuthorization != 0 {
		t.Errorf("without credentials: %d %s", status, body)
	}
}

// TestHostileHugeRetryAfter: every 429, random or throttled, says
// Retry-After: 3600.
func TestHostileHugeRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults Faults
		path   string
		want   string
	}{
		{"random 429", Faults{Rate429: 1, Hostile: Hostile{HugeRetryAfter: true}}, "/v1/Services", "3600"},
		{"throttled", Faults{MaxInFlight: 2, OtherInFlight: 2, Hostile: Hostile{HugeRetryAfter: true}}, "/v1/Configuration", "3600"},
		{"selected endpoint", Faults{Rate429: 1, Hostile: Hostile{HugeRetryAfter: true, Endpoint: EndpointConversations}}, "/v1/Conversations", "3600"},
		{"other endpoint", Faults{Rate429: 1, RetryAfterRate: 1, Hostile: Hostile{HugeRetryAfter: true, Endpoint: EndpointConversations}}, "/v1/Services", "1"},
		{"off", Faults{Rate429: 1, RetryAfterRate: 1}, "/v1/Services", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{Faults: tc.faults})
			c := newClient(t, s)
			const n = 20
			for range n {
				status, h, body, err := c.get(s.URL() + tc.path)
				if err != nil || status != 429 || h.Get("Retry-After") != tc.want || num(decode(t, body)["code"]) != 20429 {
					t.Fatalf("status %d, Retry-After %q, err %v; want 429 with %s", status, h.Get("Retry-After"), err, tc.want)
				}
			}
			cn := s.Counters()
			huge := int64(0)
			if tc.want == "3600" {
				huge = n
			}
			if cn.Hostile.HugeRetryAfter != huge || cn.RetryAfter != n {
				t.Errorf("HugeRetryAfter %d, RetryAfter %d; want %d, %d", cn.Hostile.HugeRetryAfter, cn.RetryAfter, huge, n)
			}
		})
	}
}

// TestHostileTooLongList: the large conversation and the busy user list
// more rows than Twilio allows, page by page, spec-shaped.
func TestHostileTooLongList(t *testing.T) {
	ds := testDataset()
	svc := ds.Services()[1].SID
	large := ds.Conversations(svc)[1]
	busy := ds.Users(svc)[0]
	const n = 1234
	partsPath := "/v1/Services/" + svc + "/Conversations/" + large.SID + "/Participants"
	ucsPath := "/v1/Services/" + svc + "/Users/" + busy.SID + "/Conversations"
	for _, tc := range []struct {
		name        string
		sel         string
		parts, ucsN int
	}{
		{"both", "", n, n},
		{"participants", EndpointParticipants, n, len(ds.UserConversations(svc, busy.SID))},
		{"user conversations", EndpointUserConversations, len(ds.Participants(svc, large.SID)), n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{Faults: Faults{Seed: 5, Hostile: Hostile{TooLongList: n, Endpoint: tc.sel}}})
			c := newClient(t, s)
			sc := newSpecChecker(t, s.URL())
			for _, l := range []struct {
				path, spec, key, sidField string
				want                      int
				real                      []string
				pageSize                  int
			}{
				{partsPath + "?PageSize=100", "/v1/Services/{ChatServiceSid}/Conversations/{ConversationSid}/Participants", "participants", "sid", tc.parts,
					sidsOf(ds.Participants(svc, large.SID), func(p Participant) string { return p.SID }), 100},
				{ucsPath, "/v1/Services/{ChatServiceSid}/Users/{UserSid}/Conversations", "conversations", "conversation_sid", tc.ucsN,
					sidsOf(ds.UserConversations(svc, busy.SID), func(u UserConversation) string { return u.ConversationSID }), 50},
			} {
				pages := 0
				rows := c.walk(s.URL()+l.path, l.key, func(page map[string]any) {
					pages++
					sc.page(l.spec, page)
				})
				seen := map[string]bool{}
				for i, r := range rows {
					sid := r[l.sidField].(string)
					if seen[sid] {
						t.Fatalf("%s: %s twice", l.path, sid)
					}
					seen[sid] = true
					if i < len(l.real) && sid != l.real[i] {
						t.Fatalf("%s row %d: %s, want the real %s first", l.path, i, sid, l.real[i])
					}
				}
				if len(rows) != l.want || pages != (l.want+l.pageSize-1)/l.pageSize {
					t.Errorf("%s: %d rows in %d pages, want %d", l.path, len(rows), pages, l.want)
				}
			}
			// Other conversations and users are as they were.
			other := ds.Conversations(svc)[2]
			if got := c.walk(s.URL()+"/v1/Services/"+svc+"/Conversations/"+other.SID+"/Participants", "participants", nil); len(got) != len(ds.Participants(svc, other.SID)) {
				t.Errorf("another conversation: %d participants", len(got))
			}
			wantPages := int64(0)
			if tc.parts == n {
				wantPages += (n + 99) / 100
			}
			if tc.ucsN == n {
				wantPages += (n + 49) / 50
			}
			if got := s.Counters().Hostile.TooLongPages; got != wantPages {
				t.Errorf("TooLongPages %d, want %d", got, wantPages)
			}
		})
	}
}

func sidsOf[T any](xs []T, f func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// TestHostileValidate: nonsense configurations are refused by Start (and
// panic in New).
func TestHostileValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Faults
		ok   bool
	}{
		{"zero", Faults{}, true},
		{"every mode", Faults{OtherInFlight: 3, Hostile: Hostile{WrongMetaKey: true, NullMember: true, MissingKey: true, NumericKey: true,
			HTML404: true, EndlessList: EndlessFresh, TokenCycle: true, Oversized: 1 << 20, EchoAuthorization: true, HugeRetryAfter: true, TooLongList: 1001}}, true},
		{"configuration selected for echo", Faults{Hostile: Hostile{Endpoint: EndpointConfiguration, EchoAuthorization: true}}, true},
		{"negative other", Faults{OtherInFlight: -1}, false},
		{"unknown endpoint", Faults{Hostile: Hostile{Endpoint: "messages", NullMember: true}}, false},
		{"unknown endless mode", Faults{Hostile: Hostile{EndlessList: "forever"}}, false},
		{"HTML404 on users", Faults{Hostile: Hostile{Endpoint: EndpointUsers, HTML404: true}}, false},
		{"TooLongList on conversations", Faults{Hostile: Hostile{Endpoint: EndpointConversations, TooLongList: 2000}}, false},
		{"negative oversized", Faults{Hostile: Hostile{Oversized: -1}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate()
			s, serr := Start("127.0.0.1:0", Options{Dataset: testDataset(), Faults: tc.f})
			if s != nil {
				s.Close()
			}
			if (err == nil) != tc.ok || (serr == nil) != tc.ok || (err != nil && (err.Error() != serr.Error() || strings.Contains(err.Error(), "\n"))) {
				t.Errorf("Validate: %v, Start: %v; want ok=%v", err, serr, tc.ok)
			}
		})
	}
}

// TestHostileRowModesCombined: with every row mode on, each page has one
// null member, one keyless and one numeric-keyed object, all distinct.
func TestHostileRowModesCombined(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		s := startServer(t, Options{Faults: Faults{Seed: seed, Hostile: Hostile{NullMember: true, MissingKey: true, NumericKey: true, Endpoint: EndpointConversations}}})
		page := newClient(t, s).getJSON(s.URL() + "/v1/Conversations?PageSize=4")
		nulls, missing, numeric := 0, 0, 0
		for _, it := range page["conversations"].([]any) {
			if it == nil {
				nulls++
				continue
			}
			switch it.(map[string]any)["sid"].(type) {
			case nil:
				missing++
			case json.Number:
				numeric++
			}
		}
		if nulls != 1 || missing != 1 || numeric != 1 {
			t.Errorf("seed %d: %d null, %d keyless, %d numeric; want one each", seed, nulls, missing, numeric)
		}
	}
}
