package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/fakeapi"
)

// TestFakeAPIRefusesAbsurdSizes: sizes that would exhaust memory get exit
// 2 and one line naming the flag and the limit, at once.
func TestFakeAPIRefusesAbsurdSizes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--users", "5000000"}, []string{"--users 5000000", "limit 1000000"}},
		{[]string{"--large-conversation", "1000001"}, []string{"--large-conversation 1000001", "limit 1000000"}},
		{[]string{"--services", "100", "--conversations", "10000", "--participants", "10"}, []string{"--services", "--participants", "limit 3000000"}},
		{[]string{"--demo-data=false", "--services", "1000000", "--users", "1000000", "--conversations", "1000000", "--participants", "1000000"}, []string{"rows", "limit 3000000"}},
	} {
		var out, errb bytes.Buffer
		start := time.Now()
		code := run(append([]string{"fakeapi", "--listen", "127.0.0.1:0"}, tc.args...), &out, &errb)
		lines := strings.Split(strings.TrimRight(errb.String(), "\n"), "\n")
		last := lines[len(lines)-1]
		if code != 2 || len(lines) != 1 {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errb.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(last, w) {
				t.Errorf("%v: %q does not say %q", tc.args, last, w)
			}
		}
		if d := time.Since(start); d > 2*time.Second || out.Len() != 0 {
			t.Errorf("%v: took %v, printed %q", tc.args, d, out.String())
		}
	}
}

// fakeAPIProc is a `convsync fakeapi` running in-process.
type fakeAPIProc struct {
	base, user, pass string
	out              *syncBuffer
}

func startFakeAPICmd(t *testing.T, args ...string) fakeAPIProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runFakeAPI(ctx, append([]string{"--listen", "127.0.0.1:0", "--demo-data=false"}, args...), out, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fakeapi %v: %v", args, err)
		}
	})
	re := regexp.MustCompile(`base URL: (\S+)\nexport TWILIO_ACCOUNT_SID=(\S+) TWILIO_AUTH_TOKEN=(\S+)`)
	go func() { err := <-done; out.close(); done <- err }() // a fakeapi that ends stops the wait
	if out.waitFor(t, "then:", 1) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return fakeAPIProc{base: m[1], user: m[2], pass: m[3], out: out}
		}
	}
	t.Fatalf("fakeapi %v printed no base URL:\n%s", args, out.String())
	return fakeAPIProc{}
}

type fakeResp struct {
	status int
	header http.Header
	body   []byte
	page   map[string]any // decoded JSON object, nil if not JSON
}

func (p fakeAPIProc) get(t *testing.T, path string) fakeResp {
	t.Helper()
	u := path
	if !strings.HasPrefix(u, "http") {
		u = p.base + path
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.SetBasicAuth(p.user, p.pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := fakeResp{status: resp.StatusCode, header: resp.Header, body: body}
	json.Unmarshal(body, &r.page) //nolint:errcheck // nil when not JSON
	return r
}

// TestFakeAPIHostileFlags: every new flag reaches the simulator.
func TestFakeAPIHostileFlags(t *testing.T) {
	ds := fakeapi.NewDataset(fakeapi.DefaultConfig()) // what --demo-data=false serves
	def := ds.DefaultServiceSID()
	large := ds.Conversations(def)[1]
	partsPath := "/v1/Conversations/" + large.SID + "/Participants"
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, p fakeAPIProc)
	}{
		{"other-in-flight", []string{"--other-in-flight", "2"}, func(t *testing.T, p fakeAPIProc) {
			if r := p.get(t, "/v1/Services"); r.status != 200 || r.header.Get("Twilio-Concurrent-Requests") != "3" {
				t.Errorf("status %d, Twilio-Concurrent-Requests %q, want 200 and 3", r.status, r.header.Get("Twilio-Concurrent-Requests"))
			}
		}},
		{"saturated, huge retry-after", []string{"--max-in-flight", "3", "--other-in-flight", "3", "--hostile-huge-retry-after"}, func(t *testing.T, p fakeAPIProc) {
			r := p.get(t, "/v1/Services")
			if r.status != 429 || r.header.Get("Retry-After") != "3600" || r.header.Get("Twilio-Concurrent-Requests") != "4" || r.page["code"] != float64(20429) {
				t.Errorf("status %d, Retry-After %q, header %q, body %s", r.status, r.header.Get("Retry-After"), r.header.Get("Twilio-Concurrent-Requests"), r.body)
			}
		}},
		{"participants: null member, echo, oversized", []string{"--hostile-endpoint", "participants", "--hostile-null-member",
			"--hostile-echo-authorization", "--hostile-oversized", "100000"}, func(t *testing.T, p fakeAPIProc) {
			r := p.get(t, partsPath)
			nulls := 0
			for _, it := range r.page["participants"].([]any) {
				if it == nil {
					nulls++
				}
			}
			if r.status != 200 || nulls != 1 || len(r.body) != 100000 {
				t.Errorf("participants: status %d, %d nulls, %d bytes", r.status, nulls, len(r.body))
			}
			if r := p.get(t, partsPath+"?PageSize=x"); r.status != 400 || !strings.Contains(r.page["message"].(string), p.pass) {
				t.Errorf("400 does not echo the credentials: %s", r.body)
			}
			for _, it := range p.get(t, "/v1/Users").page["users"].([]any) {
				if it == nil {
					t.Fatal("users (not selected) has a null member")
				}
			}
			if !strings.Contains(p.out.String(), "hostile answers (participants): null-member, oversized=100000, echo-authorization") {
				t.Errorf("no summary of the hostile modes:\n%s", p.out.String())
			}
		}},
		{"wrong meta key", []string{"--hostile-endpoint", "users", "--hostile-wrong-meta-key"}, func(t *testing.T, p fakeAPIProc) {
			r := p.get(t, "/v1/Users")
			if meta, _ := r.page["meta"].(map[string]any); meta["key"] != "services" || r.page["users"] != nil {
				t.Errorf("users page: %s", truncBody(r.body))
			}
		}},
		{"missing and numeric keys", []string{"--hostile-endpoint", "conversations", "--hostile-missing-key", "--hostile-numeric-key"}, func(t *testing.T, p fakeAPIProc) {
			missing, numeric := 0, 0
			for _, it := range p.get(t, "/v1/Conversations").page["conversations"].([]any) {
				switch it.(map[string]any)["sid"].(type) {
				case nil:
					missing++
				case float64:
					numeric++
				}
			}
			if missing != 1 || numeric != 1 {
				t.Errorf("%d without sid, %d numeric, want 1 and 1", missing, numeric)
			}
		}},
		{"html 404", []string{"--hostile-html-404"}, func(t *testing.T, p fakeAPIProc) {
			if r := p.get(t, partsPath); r.status != 404 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || r.page != nil {
				t.Errorf("participants: %d %q", r.status, r.header.Get("Content-Type"))
			}
		}},
		{"endless fresh services", []string{"--hostile-endpoint", "services", "--hostile-endless", "fresh"}, func(t *testing.T, p fakeAPIProc) {
			next, seen := "/v1/Services?PageSize=2", map[string]bool{}
			for range 5 {
				r := p.get(t, next)
				for _, it := range r.page["services"].([]any) {
					seen[it.(map[string]any)["sid"].(string)] = true
				}
				next, _ = r.page["meta"].(map[string]any)["next_page_url"].(string)
				if next == "" {
					t.Fatal("the services list ended")
				}
			}
			if len(seen) != 10 {
				t.Errorf("%d distinct services over 5 pages of 2", len(seen))
			}
		}},
		{"token cycle", []string{"--hostile-endpoint", "services", "--hostile-token-cycle"}, func(t *testing.T, p fakeAPIProc) {
			meta := p.get(t, "/v1/Services").page["meta"].(map[string]any)
			if meta["next_page_url"] == nil || meta["next_page_url"] != meta["url"] {
				t.Errorf("one-page list: next_page_url %v, url %v", meta["next_page_url"], meta["url"])
			}
		}},
		{"too long list", []string{"--hostile-too-long-list", "1001"}, func(t *testing.T, p fakeAPIProc) {
			rows, next := 0, partsPath+"?PageSize=100"
			for next != "" {
				r := p.get(t, next)
				rows += len(r.page["participants"].([]any))
				next, _ = r.page["meta"].(map[string]any)["next_page_url"].(string)
			}
			if rows != 1001 {
				t.Errorf("%d participants, want 1001", rows)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, startFakeAPICmd(t, tc.args...)) })
	}
}

func truncBody(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// TestFakeAPIHostileFlagErrors: nonsense gets exit 2 and one line.
func TestFakeAPIHostileFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hostile-endpoint", "messages"}, "hostile-endpoint"},
		{[]string{"--hostile-endless", "forever"}, "hostile-endless"},
		{[]string{"--hostile-html-404", "--hostile-endpoint", "users"}, "--hostile-html-404"},
		{[]string{"--hostile-too-long-list", "2000", "--hostile-endpoint", "conversations"}, "--hostile-too-long-list"},
		{[]string{"--other-in-flight", "-1"}, "--other-in-flight"},
		{[]string{"--hostile-oversized", "-5"}, "--hostile-oversized"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"fakeapi", "--listen", "127.0.0.1:0", "--demo-data=false"}, tc.args...), &out, &errb)
		lines := strings.Split(strings.TrimRight(errb.String(), "\n"), "\n")
		if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) || out.Len() != 0 {
			t.Errorf("%v: exit %d, stderr %q, stdout %q", tc.args, code, errb.String(), out.String())
		}
	}
}
