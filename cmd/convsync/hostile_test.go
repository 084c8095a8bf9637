package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/fakeapi"
)

// peakRSS is the most memory the finished process held, in bytes.
func (p *proc) peakRSS() int64 {
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024 // KiB on Linux
	}
	return -1
}

// TestHostileServers runs a real export against a server sending each
// kind of answer convsync cannot trust: every run must fail, not shorten
// the export, in bounded time, with a one-line reason saying what was
// wrong, within 1 GiB of memory, writing no output.
func TestHostileServers(t *testing.T) {
	cases := []struct {
		name   string
		h      fakeapi.Hostile
		faults fakeapi.Faults
		args   []string
		reason string
	}{
		{name: "meta.key of another list", h: fakeapi.Hostile{Endpoint: fakeapi.EndpointParticipants, WrongMetaKey: true}, reason: "meta.key"},
		{name: "null list member", h: fakeapi.Hostile{Endpoint: fakeapi.EndpointUsers, NullMember: true}, reason: "is null"},
		{name: "participant without sid", h: fakeapi.Hostile{Endpoint: fakeapi.EndpointParticipants, MissingKey: true}, reason: "sid is missing"},
		{name: "numeric sid", h: fakeapi.Hostile{Endpoint: fakeapi.EndpointParticipants, NumericKey: true}, reason: "sid is number"},
		{name: "HTML 404 on child lists", h: fakeapi.Hostile{HTML404: true}, reason: "404 without Twilio's error JSON"},
		{name: "endless list repeating its rows", h: fakeapi.Hostile{Endpoint: fakeapi.EndpointConversations, EndlessList: fakeapi.EndlessRepeat}, reason: "nothing new"},
		{name: "endless list of new participants", h: fakeapi.Hostile{Endpoint: fakeapi.EndpointParticipants, EndlessList: fakeapi.EndlessFresh}, reason: "longer than Twilio allows"},
		{name: "page token cycle", h: fakeapi.Hostile{Endpoint: fakeapi.EndpointUsers, TokenCycle: true}, reason: "cycle"},
		{name: "list longer than Twilio allows", h: fakeapi.Hostile{TooLongList: 1234}, reason: "longer than Twilio allows (1000)"},
		{name: "oversized pages, many at once", h: fakeapi.Hostile{Oversized: 50 << 20}, args: []string{"--concurrency", "64"}, reason: "larger than 8 MiB"},
		{name: "Retry-After of an hour", h: fakeapi.Hostile{HugeRetryAfter: true}, faults: fakeapi.Faults{Rate429: 1}, reason: "retry after 1h0m0s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := c.faults
			f.Hostile = c.h
			n := startNight(t, 51, f)
			o := newOuts(t)
			p := runProc(t, n.env(), append(o.exportArgs(n), c.args...)...)
			rss := p.peakRSS()
			t.Logf("exit %d after %s, peak RSS %d MiB: %s", p.code, p.took.Round(time.Millisecond), rss>>20, p.lastLine())
			if p.code != 1 {
				t.Errorf("exit %d, want 1", p.code)
			}
			if last := p.lastLine(); !strings.HasPrefix(last, "convsync: ") || !strings.Contains(last, c.reason) {
				t.Errorf("last line %q does not say %q", last, c.reason)
			}
			if rss > 1<<30 {
				t.Errorf("peak RSS %d MiB, over 1 GiB", rss>>20)
			}
			if _, err := os.Stat(o.db); !os.IsNotExist(err) {
				t.Errorf("a failed first run left a DuckDB file: %v", err)
			}
			if m, _ := filepath.Glob(filepath.Join(o.pq, "*", "snapshot_date=*")); len(m) > 0 {
				t.Errorf("a failed first run published partitions: %v", m)
			}
		})
	}
}

// TestEchoedCredentialsNeverShown: a server that echoes the request's
// Authorization header and credentials in its error messages leaves no
// trace of the secret in any form on stderr or stdout.
func TestEchoedCredentialsNeverShown(t *testing.T) {
	for _, auth := range []string{"token", "api key"} {
		t.Run(auth, func(t *testing.T) {
			n := startNight(t, 61, fakeapi.Faults{Rate500: 1, Hostile: fakeapi.Hostile{EchoAuthorization: true}})
			c := n.srv.Credentials()
			user, secret := c.AccountSID, c.AuthToken
			env := n.env()
			if auth == "api key" {
				user, secret = c.APIKeySID, c.APIKeySecret
				env = append(env, "TWILIO_API_KEY="+c.APIKeySID, "TWILIO_API_SECRET="+c.APIKeySecret)
			}
			o := newOuts(t)
			p := runProc(t, env, append(o.exportArgs(n), "--max-retries", "1", "--log-level", "debug")...)
			if p.code == 0 {
				t.Fatal("exit 0 against a server answering 500 to everything")
			}
			if n.srv.Counters().Hostile.EchoAuthorization == 0 {
				t.Fatal("the server echoed nothing: the test did not exercise the scrubbing")
			}
			pair := []byte(user + ":" + secret)
			forms := []string{secret}
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
				forms = append(forms, enc.EncodeToString(pair))
			}
			out := p.stderr.String() + p.stdout.String()
			for _, f := range forms {
				if strings.Contains(out, f) {
					t.Errorf("output holds a form of the secret (%d chars)", len(f))
				}
			}
			if strings.Contains(out, "Basic ") && !strings.Contains(out, "Basic {redacted}") {
				t.Errorf("output holds an Authorization header value: %q", p.lastLine())
			}
		})
	}
}
