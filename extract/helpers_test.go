package extract

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"iter"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fastjson"
)

const (
	testSID    = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testToken  = "tok3n-super-secret-value"
	testKey    = "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	testSecret = "s3cret-api-secret-value"
	testIS     = "ISaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testCH     = "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testUS     = "USaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

// M is a list member as a test server renders it.
type M = map[string]any

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// sleepRecorder is an injectable Config.Sleep that records delays without
// sleeping.
type sleepRecorder struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.delays = append(s.delays, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.delays...)
}

type testEnv struct {
	c     *Client
	srv   *httptest.Server
	log   *syncBuffer
	sleep *sleepRecorder
}

// newEnv starts a server with h and a client pointed at it, with both an
// auth token and an API key, debug logs captured and sleeps recorded.
func newEnv(t *testing.T, h http.HandlerFunc, mod ...func(*Config)) *testEnv {
	t.Helper()
	return newEnvServer(t, httptest.NewServer(h), mod...)
}

// newEnvServer is newEnv with a server the caller made (and started).
// When the test ends, the client must hold no page memory: every page a
// walk handed out was released, and every page it did not hand out was
// released by the walk itself.
func newEnvServer(t *testing.T, srv *httptest.Server, mod ...func(*Config)) *testEnv {
	t.Helper()
	t.Cleanup(srv.Close)
	e := &testEnv{srv: srv, log: &syncBuffer{}, sleep: &sleepRecorder{}}
	cfg := Config{
		BaseURL:     srv.URL,
		Credentials: Credentials{AccountSID: testSID, AuthToken: testToken, APIKey: testKey, APISecret: testSecret},
		Logger:      zerolog.New(e.log).Level(zerolog.DebugLevel),
		Sleep:       e.sleep.sleep,
		MaxRetries:  3,
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	t.Cleanup(func() {
		if held := c.Stats().MemoryHeld; held != 0 {
			t.Errorf("client still holds %d bytes of pages at the end of the test", held)
		}
		if n := len(c.mem.large); n != 0 {
			t.Errorf("%d large-read slots still taken at the end of the test", n)
		}
	})
	return e
}

// listBody renders a Twilio list page.
func listBody(key string, items []M, next string) []byte {
	if items == nil {
		items = []M{}
	}
	meta := M{"key": key, "page_size": len(items), "next_page_url": nil}
	if next != "" {
		meta["next_page_url"] = next
	}
	b, err := json.Marshal(M{key: items, "meta": meta})
	if err != nil {
		panic(err)
	}
	return b
}

// members returns n list members with sids prefix0, prefix1, ...
func members(prefix string, n int) []M {
	out := make([]M, n)
	for i := range out {
		out[i] = M{"sid": fmt.Sprint(prefix, i)}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func twilioError(status, code int, msg string) []byte {
	return fmt.Appendf(nil, `{"code": %d, "message": %q, "more_info": "https://www.twilio.com/docs/errors/%d", "status": %d}`, code, msg, code, status)
}

// resetConn hijacks the connection and closes it with a TCP RST.
func resetConn(t *testing.T, w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// truncated writes a 200 whose Content-Length exceeds the body, then closes.
func truncated(t *testing.T, w http.ResponseWriter) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"services\": [")
	_ = buf.Flush()
	_ = conn.Close()
}

// collect drains a walk: it copies every object out of its page (the
// copies stay valid after the page is released) and releases every page.
func collect(seq iter.Seq2[PageOf, error]) ([]Object, error) {
	var out []Object
	for pg, err := range seq {
		if err != nil {
			return out, err
		}
		if pg.Page == nil {
			return out, fmt.Errorf("a walk yielded no page and no error")
		}
		for _, o := range pg.Items {
			out = append(out, clone(o))
		}
		pg.Release()
	}
	return out, nil
}

// clone copies an object out of its page.
func clone(o Object) Object { return fastjson.MustParseBytes(o.MarshalTo(nil)) }

func sids(objs []Object) string {
	var s []string
	for _, o := range objs {
		s = append(s, string(o.GetStringBytes("sid")))
	}
	return strings.Join(s, ",")
}

// secretForms returns every textual form in which the secret of a
// user:secret Basic auth pair may be echoed: raw, URL-escaped, the pair in
// base64 in the four alphabets, and the whole Authorization header value.
func secretForms(user, secret string) []string {
	out := []string{secret, url.QueryEscape(secret), url.PathEscape(secret)}
	pair := []byte(user + ":" + secret)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b := enc.EncodeToString(pair)
		out = append(out, b, url.QueryEscape(b), "Basic "+b)
	}
	return out
}

// fixedBug fails a test whose check found a bug that was fixed: each
// call names the bug, so a regression says what came back.
func fixedBug(t *testing.T, bug string, format string, args ...any) {
	t.Helper()
	t.Fatalf("a fixed bug is back (%s): %s", bug, fmt.Sprintf(format, args...))
}
