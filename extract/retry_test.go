package extract

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"
)

func TestShouldRetry(t *testing.T) {
	tErr := func(err error) error { return &transportError{method: "GET", path: "/v1/Services", err: err} }
	dErr := func(err error) error { return &decodeError{method: "GET", path: "/v1/Services", err: err} }
	api := func(status int) error { return &APIError{Status: status, Method: "GET", Path: "/v1/Services"} }
	untrusted := func(reason string) error { return &UntrustedError{Method: "GET", Path: "/v1/Services", Reason: reason} }
	var syntax error
	{
		var v any
		syntax = json.Unmarshal([]byte(`{"a":`), &v)
	}
	cases := []struct {
		name            string
		retries, max    int
		status          int
		err             error
		want            bool
		reasonSubstring string
	}{
		{"success", 0, 8, 200, nil, false, "ok"},
		{"429", 0, 8, 429, api(429), true, "rate limited"},
		{"500", 0, 8, 500, api(500), true, "server error (500)"},
		{"502", 3, 8, 502, api(502), true, "502"},
		{"503", 7, 8, 503, api(503), true, "503"},
		{"504", 0, 8, 504, api(504), true, "504"},
		{"503 exhausted", 8, 8, 503, api(503), false, "retries exhausted"},
		{"no retries configured", 0, 0, 503, api(503), false, "retries exhausted"},
		{"501", 0, 8, 501, api(501), false, "status 501"},
		{"400", 0, 8, 400, api(400), false, "status 400"},
		{"401", 0, 8, 401, api(401), false, "unauthorized"},
		{"403", 0, 8, 403, api(403), false, "unauthorized"},
		{"404", 0, 8, 404, api(404), false, "not found"},
		{"409", 0, 8, 409, api(409), false, "status 409"},
		{"reset", 0, 8, 0, tErr(syscall.ECONNRESET), true, "network error"},
		{"EOF", 0, 8, 0, tErr(io.EOF), true, "network error"},
		{"short body", 0, 8, 200, tErr(io.ErrUnexpectedEOF), true, "short body"},
		{"attempt timeout", 0, 8, 0, tErr(context.DeadlineExceeded), true, "timeout"},
		{"network exhausted", 2, 2, 0, tErr(syscall.ECONNRESET), false, "retries exhausted: network error"},
		{"canceled", 0, 8, 0, tErr(context.Canceled), false, "canceled"},
		{"canceled bare", 0, 8, 0, context.Canceled, false, "canceled"},
		{"foreign redirect", 0, 8, 0, tErr(fmt.Errorf("x: %w", ErrForeignHost)), false, "foreign host"},
		{"foreign next", 0, 8, 0, fmt.Errorf("x: %w", ErrForeignHost), false, "foreign host"},
		{"JSON syntax", 0, 8, 200, dErr(syntax), true, "invalid JSON"},
		{"JSON truncated", 0, 8, 200, dErr(io.ErrUnexpectedEOF), true, "invalid JSON"},
		// Shape errors and bodies over maxPageBytes are untrustworthy
		// answers now: retried (get bounds them to untrustedRetries).
		{"untrusted", 0, 8, 200, untrusted("meta.key is \"users\", not \"services\""), true, "untrustworthy answer"},
		{"untrusted 404", 0, 8, 404, untrusted("404 without Twilio's error JSON"), true, "untrustworthy answer"},
		{"too large", 0, 8, 200, untrusted(errBodyTooLarge.Error()), true, "untrustworthy answer"},
		{"untrusted exhausted", 3, 3, 200, untrusted("x"), false, "retries exhausted: untrustworthy answer"},
		{"wrapped untrusted", 0, 8, 200, fmt.Errorf("ctx: %w", untrusted("x")), true, "untrustworthy answer"},
		{"wrapped 503", 0, 8, 503, fmt.Errorf("ctx: %w", api(503)), true, "503"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := shouldRetry(tc.retries, tc.max, tc.status, tc.err)
			if got != tc.want || !contains(reason, tc.reasonSubstring) {
				t.Errorf("shouldRetry = %v, %q; want %v, ~%q", got, reason, tc.want, tc.reasonSubstring)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestBackoff(t *testing.T) {
	top := func(n int64) int64 { return n - 1 } // largest value randN may return
	zero := func(int64) int64 { return 0 }
	ms := time.Millisecond
	cases := []struct {
		name       string
		n          int
		retryAfter time.Duration
		randN      func(int64) int64
		want       time.Duration
	}{
		{"first max", 0, 0, top, 250 * ms},
		{"second max", 1, 0, top, 500 * ms},
		{"fifth max", 4, 0, top, 4000 * ms},
		{"capped", 10, 0, top, 20 * time.Second},
		{"huge n", 1000, 0, top, 20 * time.Second},
		{"jitter low", 3, 0, zero, 0},
		{"retry-after raises", 0, 5 * time.Second, top, 5 * time.Second},
		{"retry-after below jitter", 10, time.Second, top, 20 * time.Second},
		// backoff no longer caps Retry-After: get refuses one over
		// Config.MaxRetryAfter with a *RetryAfterError instead.
		{"retry-after not capped", 0, time.Hour, zero, time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoff(250*ms, 20*time.Second, tc.n, tc.retryAfter, tc.randN); got != tc.want {
				t.Errorf("backoff = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("overflow", func(t *testing.T) {
		const maxD = time.Duration(1<<63 - 1)
		if got := backoff(time.Hour, maxD, 100, 0, top); got != maxD {
			t.Errorf("backoff = %v", got)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-3", 0},
		{"3", 3 * time.Second},
		{"120", 120 * time.Second},
		{" 7 ", 7 * time.Second},
		{"3600", time.Hour},
		{"999999999", 24 * time.Hour}, // bounded so that it cannot overflow
		{"soon", 0},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second},
		{now.Add(-10 * time.Second).Format(http.TimeFormat), 0},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			if got := parseRetryAfter(tc.in, now); got != tc.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	const is = "ISaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	cases := []struct{ in, want string }{
		{"https://h/v1/Services?PageSize=100", "/v1/Services?PageSize=100"},
		{"https://h/v1/Services/" + is + "/Users/USaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Conversations",
			"/v1/Services/" + is + "/Users/USaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/Conversations"},
		{"https://h/v1/Services/" + is + "/Users/jane%2Fdoe/Conversations?Page=1&PageToken=PT1",
			"/v1/Services/" + is + "/Users/{id}/Conversations?Page=1&PageToken=REDACTED"},
		// Page tokens are the server's choice: never logged.
		{"https://h/v1/Services?PageSize=50&PageToken=PTc2VjcmV0", "/v1/Services?PageSize=50&PageToken=REDACTED"},
		{"https://h/v1/Services/" + is + "/ParticipantConversations?Address=whatsapp%3A%2B1555&PageSize=50",
			"/v1/Services/" + is + "/ParticipantConversations?Address=REDACTED&PageSize=50"},
		{"https://u:p@h/v1/Services/" + is + "/ParticipantConversations?Identity=bob&Other=x",
			"/v1/Services/" + is + "/ParticipantConversations?Identity=REDACTED&Other=REDACTED"},
		{"https://h/v1/Services/ISnothex/Users", "/v1/Services/{id}/Users"},
		{"https://h/v1/Services?%zz", "/v1/Services?REDACTED"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			u, err := url.Parse(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := redactURL(u); got != tc.want {
				t.Errorf("redactURL = %q, want %q", got, tc.want)
			}
		})
	}
}
