package fakeapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/convsync/convsync/internal/oaispec"
)

// Shared default dataset: generated once per test binary.
var (
	defaultDSOnce sync.Once
	defaultDS     *Dataset
)

func testDataset() *Dataset {
	defaultDSOnce.Do(func() { defaultDS = NewDataset(DefaultConfig()) })
	return defaultDS
}

// startServer starts a server on 127.0.0.1:0 and closes it with the test.
func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Dataset == nil && opts.Config == nil {
		opts.Dataset = testDataset()
	}
	s, err := Start("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// apiClient is a plain net/http client with Basic credentials.
type apiClient struct {
	t          testing.TB
	hc         *http.Client
	user, pass string
}

func newClient(t testing.TB, s *Server) *apiClient {
	c := s.Credentials()
	return &apiClient{t: t, hc: &http.Client{}, user: c.AccountSID, pass: c.AuthToken}
}

// get performs an authenticated GET and returns status, headers and body.
func (c *apiClient) get(u string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if c.user != "" || c.pass != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

// getJSON GETs u and decodes a 200 JSON body (numbers as json.Number).
func (c *apiClient) getJSON(u string) map[string]any {
	c.t.Helper()
	status, _, body, err := c.get(u)
	if err != nil {
		c.t.Fatalf("GET %s: %v", u, err)
	}
	if status != 200 {
		c.t.Fatalf("GET %s: status %d: %s", u, status, body)
	}
	return decode(c.t, body)
}

func decode(t testing.TB, body []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %q: %v", truncate(body), err)
	}
	return m
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// walk follows next_page_url from first and returns every item under key,
// calling onPage for every decoded page.
func (c *apiClient) walk(first, key string, onPage func(page map[string]any)) []map[string]any {
	c.t.Helper()
	var out []map[string]any
	next := first
	for guard := 0; next != ""; guard++ {
		if guard > 10000 {
			c.t.Fatalf("walk %s: too many pages", first)
		}
		page := c.getJSON(next)
		if onPage != nil {
			onPage(page)
		}
		items, ok := page[key].([]any)
		if !ok {
			c.t.Fatalf("GET %s: no %q array", next, key)
		}
		for _, it := range items {
			out = append(out, it.(map[string]any))
		}
		meta := page["meta"].(map[string]any)
		next, _ = meta["next_page_url"].(string)
	}
	return out
}

// roundTrip converts a rendered object to the shape json.Decoder+UseNumber
// produces, for comparisons with API output.
func roundTrip(t testing.TB, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, b)
}

func q(v string) string { return url.QueryEscape(v) }

// specPath locates twilio_conversations_v1.json (see oaispec.Find); "" if absent.
func specPath() string {
	p, err := oaispec.Find()
	if err != nil {
		return ""
	}
	return p
}

var (
	specOnce sync.Once
	specDoc  map[string]any
	specErr  error
)

// loadSpec returns the decoded OpenAPI document or skips the test.
func loadSpec(t testing.TB) map[string]any {
	t.Helper()
	p := specPath()
	if p == "" {
		oaispec.SkipOrFail(t, oaispec.ErrNotFound)
	}
	specOnce.Do(func() {
		b, err := os.ReadFile(p)
		if err != nil {
			specErr = err
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		specErr = dec.Decode(&specDoc)
	})
	if specErr != nil {
		t.Fatalf("load spec %s: %v", p, specErr)
	}
	return specDoc
}
