package extract

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
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
	srv := httptest.NewServer(h)
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
	return e
}

// listBody renders a Twilio list page.
func listBody(key string, items []Object, next string) []byte {
	meta := map[string]any{"key": key, "page_size": len(items), "next_page_url": nil}
	if next != "" {
		meta["next_page_url"] = next
	}
	b, err := json.Marshal(map[string]any{key: items, "meta": meta})
	if err != nil {
		panic(err)
	}
	return b
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

// collect drains a sequence.
func collect(seq func(func(Object, error) bool)) ([]Object, error) {
	var out []Object
	for o, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, o)
	}
	return out, nil
}

func sids(objs []Object) string {
	var s []string
	for _, o := range objs {
		s = append(s, fmt.Sprint(o["sid"]))
	}
	return strings.Join(s, ",")
}
