// Package extract is convsync's client for the Twilio Conversations v1 REST
// API. It pages through list endpoints lazily (iter.Seq2 of pages),
// decoding each page once, straight from the response body; refuses
// answers it cannot trust (UntrustedError) rather than returning less;
// retries transient failures; keeps the requests in flight below the
// account's concurrency limit, which it finds by itself; bounds the memory
// of the pages it hands out whatever the server sends; turns non-2xx
// responses into *APIError; and never sends credentials to another host
// nor prints credentials, identities or addresses.
package extract

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// DefaultBaseURL is the Twilio Conversations API root.
const DefaultBaseURL = "https://conversations.twilio.com"

// Defaults applied by New to zero Config fields.
const (
	DefaultConcurrency    = 100
	DefaultRequestTimeout = 30 * time.Second
	DefaultMaxRetries     = 8
	DefaultBaseBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff     = 20 * time.Second
	DefaultMaxRetryAfter  = 2 * time.Minute
	// MaxConcurrency is the largest Concurrency accepted.
	MaxConcurrency = 256
)

// maxThrottleRetries bounds the retries of one request answered 429 code
// 20429 (over the account's concurrency limit). They are flow control, not
// failures, so they do not count against MaxRetries.
const maxThrottleRetries = 200

// untrustedRetries bounds the retries of an answer that cannot be trusted.
const untrustedRetries = 3

// userAgent is sent with every request.
const userAgent = "convsync"

// Config configures a Client. Zero fields take the documented defaults.
type Config struct {
	// BaseURL is the API root, default DefaultBaseURL. It must be an absolute
	// http or https URL without user info, query or fragment.
	BaseURL string
	// Credentials authenticate every request.
	Credentials Credentials
	// HTTPClient is optional; it is copied, and the copy refuses redirects to
	// another host. By default a transport sized for Concurrency is used.
	HTTPClient *http.Client
	// Concurrency is the most requests in flight, default 100; below it the
	// client finds the account's limit by itself.
	Concurrency int
	// RequestTimeout bounds each attempt (request and body read), default 30s.
	RequestTimeout time.Duration
	// MaxRetries is the number of retries after the first attempt, default 8;
	// a negative value disables retries.
	MaxRetries int
	// BaseBackoff and MaxBackoff shape the full-jitter backoff
	// rand(0, min(MaxBackoff, BaseBackoff*2^n)); defaults 250ms and 20s.
	BaseBackoff, MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits out
	// (default 2m); a longer one fails the request at once.
	MaxRetryAfter time.Duration
	// Logger receives debug logs per request and page and warnings per retry.
	// Paths are redacted and credentials are never logged.
	Logger zerolog.Logger
	// Sleep waits between retries; default a timer honouring ctx. For tests.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Stats is a snapshot of a Client's counters.
type Stats struct {
	Requests      int64 // attempts sent
	Retries       int64 // attempts repeated after a transient failure or a 429
	Pages         int64 // list pages decoded
	Throttled     int64 // 429 responses
	ServerErrors  int64 // 5xx responses
	NetworkErrors int64 // transport failures, including short bodies
	// Limit is the current limit on requests in flight, InFlight the
	// requests in flight now, PeakInFlight the most at once so far.
	Limit, InFlight, PeakInFlight int
	// MemoryHeld is the memory held by pages handed out and not released.
	MemoryHeld int64
}

// Client calls the Twilio Conversations API. It is safe for concurrent use.
type Client struct {
	base          *url.URL
	creds         Credentials
	scrubSecrets  []string
	hc            *http.Client
	lim           *limiter
	mem           *budget
	timeout       time.Duration
	maxRetries    int
	baseBackoff   time.Duration
	maxBackoff    time.Duration
	maxRetryAfter time.Duration
	log           zerolog.Logger
	sleep         func(context.Context, time.Duration) error

	requests, retries, pages, throttled, serverErrors, networkErrors atomic.Int64
	inflight                                                         atomic.Int64
	reached                                                          atomic.Bool // some request got an answer
	peak                                                             peakCounter
}

// peakCounter keeps the largest value observed.
type peakCounter struct{ v atomic.Int64 }

func (p *peakCounter) observe(n int64) {
	for {
		cur := p.v.Load()
		if n <= cur || p.v.CompareAndSwap(cur, n) {
			return
		}
	}
}

// New validates cfg, applies defaults and returns a Client.
func New(cfg Config) (*Client, error) {
	raw := cfg.BaseURL
	if raw == "" {
		raw = DefaultBaseURL
	}
	base, err := ParseBaseURL(raw)
	if err != nil {
		return nil, err
	}
	if err := cfg.Credentials.validate(); err != nil {
		return nil, err
	}
	n := cfg.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	if n > MaxConcurrency {
		return nil, fmt.Errorf("concurrency %d is over the maximum %d", n, MaxConcurrency)
	}
	c := &Client{
		base:          base,
		creds:         cfg.Credentials,
		scrubSecrets:  cfg.Credentials.Secrets(),
		lim:           newLimiter(n, nil),
		mem:           newBudget(softBudget),
		timeout:       orDefault(cfg.RequestTimeout, DefaultRequestTimeout),
		maxRetries:    cfg.MaxRetries,
		baseBackoff:   orDefault(cfg.BaseBackoff, DefaultBaseBackoff),
		maxBackoff:    orDefault(cfg.MaxBackoff, DefaultMaxBackoff),
		maxRetryAfter: orDefault(cfg.MaxRetryAfter, DefaultMaxRetryAfter),
		log:           cfg.Logger,
		sleep:         cfg.Sleep,
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	c.maxBackoff = max(c.maxBackoff, c.baseBackoff)
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient
		c.hc = &hc
	} else {
		c.hc = &http.Client{Transport: newTransport(n)}
	}
	c.hc.CheckRedirect = c.checkRedirect
	return c, nil
}

// newTransport returns a transport that keeps a connection per request
// in flight (Go's default keeps 2 idle per host, so most would be
// re-dialled) and speaks HTTP/2 where the server offers it.
func newTransport(n int) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = n
	tr.MaxIdleConnsPerHost = n
	tr.ForceAttemptHTTP2 = true
	return tr
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// ParseBaseURL checks an API root: an absolute http or https URL without
// user info, query or fragment. The path loses its trailing slashes.
func ParseBaseURL(raw string) (*url.URL, error) {
	base, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("base URL is not a valid URL")
	}
	switch {
	case base.Scheme != "http" && base.Scheme != "https":
		return nil, errors.New("base URL must be an absolute http or https URL")
	case base.Host == "":
		return nil, errors.New("base URL has no host")
	case base.User != nil:
		return nil, errors.New("base URL must not contain credentials")
	case base.RawQuery != "" || base.Fragment != "" || base.ForceQuery:
		return nil, errors.New("base URL must not have a query or fragment")
	}
	base.Scheme = strings.ToLower(base.Scheme)
	base.Host = strings.ToLower(base.Host)
	base.Path = strings.TrimRight(base.Path, "/")
	base.RawPath = ""
	return base, nil
}

// BaseURL returns the API root requests go to, normalised.
func (c *Client) BaseURL() string { return c.base.String() }

// Stats returns a snapshot of the counters; safe to call while running.
func (c *Client) Stats() Stats {
	ls := c.lim.snapshot()
	return Stats{
		Requests:      c.requests.Load(),
		Retries:       c.retries.Load(),
		Pages:         c.pages.Load(),
		Throttled:     c.throttled.Load(),
		ServerErrors:  c.serverErrors.Load(),
		NetworkErrors: c.networkErrors.Load(),
		Limit:         ls.Limit,
		InFlight:      ls.InFlight,
		PeakInFlight:  int(c.peak.v.Load()),
		MemoryHeld:    c.mem.Held(),
	}
}

func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if !sameOrigin(req.URL, c.base) {
		return fmt.Errorf("redirect to %s://%s: %w", req.URL.Scheme, req.URL.Host, ErrForeignHost)
	}
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	return nil
}

// sameOrigin reports whether a and b have the same scheme, host and port.
func sameOrigin(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return a.User == nil &&
		strings.EqualFold(a.Scheme, b.Scheme) &&
		strings.EqualFold(a.Hostname(), b.Hostname()) &&
		port(a) == port(b)
}

// endpoint builds an URL under BaseURL from unescaped path segments.
func (c *Client) endpoint(q url.Values, segs ...string) (*url.URL, error) {
	var b strings.Builder
	b.WriteString(c.base.String())
	for _, s := range segs {
		if s == "" {
			return nil, errors.New("empty path parameter")
		}
		b.WriteByte('/')
		b.WriteString(escapeSegment(s))
	}
	if len(q) > 0 {
		b.WriteByte('?')
		b.WriteString(q.Encode())
	}
	u, err := url.Parse(b.String())
	if err != nil {
		return nil, errors.New("cannot build request URL")
	}
	return u, nil
}

// escapeSegment escapes one path segment, including "." and ".." so that
// they are not treated as dot segments.
func escapeSegment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return url.PathEscape(s)
}

// request is one GET of a list page (or of a single resource), with what
// the retry loop needs to know about it.
type request struct {
	u      *url.URL
	path   string // redacted, for errors
	logURL string // redacted, for logs
	ticket uint64 // the list walk it belongs to
	prio   int
}

func (c *Client) newRequest(u *url.URL, ticket uint64, prio int) *request {
	return &request{u: u, path: redactPath(u), logURL: redactURL(u), ticket: ticket, prio: prio}
}

// get fetches r, retrying transient failures, and hands the body of the
// 2xx response to decode (inside the retry loop, so that malformed or
// untrustworthy answers are retried too). decode must not keep body.
func (c *Client) get(ctx context.Context, r *request, decode func(body []byte) error) error {
	retries, throttles := 0, 0
	prio := r.prio
	for {
		if err := c.mem.admit(ctx, r.ticket); err != nil {
			return fmt.Errorf("twilio: GET %s: %w", r.path, err)
		}
		res := c.attempt(ctx, r, prio, retries+throttles+1)
		err := res.err
		if err == nil {
			err = decode(*res.body)
			putBody(res.body)
			if err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("twilio: GET %s: %w", r.path, context.Cause(ctx))
		}
		if unreachable(err) && !c.reached.Load() {
			// Nothing ever answered at this address: waiting will not help
			// a mistyped base URL or a host without a server.
			return fmt.Errorf("%w: cannot reach the API at %s: %w", ErrUnreachable, c.base.String(), err)
		}
		after := parseRetryAfter(res.retryAfter, time.Now())
		if res.throttled {
			// Over the account's concurrency limit: never processed and always
			// safe to retry, as soon as the limiter gives a slot again (a
			// Retry-After longer than convsync waits ends the run instead).
			if after > c.maxRetryAfter {
				return &RetryAfterError{Method: http.MethodGet, Path: r.path, After: after.String(), Max: c.maxRetryAfter.String(), Err: err}
			}
			throttles++
			if throttles > maxThrottleRetries {
				return fmt.Errorf("%w (still over the account's concurrency limit after %d attempts)", err, throttles)
			}
			c.retries.Add(1)
			prio = prioRetry
			if d := c.lim.throttlePause(); d > 0 {
				if err := c.sleep(ctx, d); err != nil {
					return fmt.Errorf("twilio: GET %s: %w", r.path, err)
				}
			}
			continue
		}
		limit := c.maxRetries
		if errors.Is(err, ErrUntrusted) {
			limit = min(limit, untrustedRetries)
		}
		ok, reason := shouldRetry(retries, limit, res.status, err)
		if !ok {
			if retries+throttles > 0 {
				return fmt.Errorf("%w (giving up after %d attempts: %s)", err, retries+throttles+1, reason)
			}
			return err
		}
		if after > c.maxRetryAfter {
			return &RetryAfterError{Method: http.MethodGet, Path: r.path, After: after.String(), Max: c.maxRetryAfter.String(), Err: err}
		}
		d := backoff(c.baseBackoff, c.maxBackoff, retries, after, rand.Int64N)
		retries++
		c.retries.Add(1)
		c.log.Warn().Str("path", r.logURL).Str("reason", reason).Int("attempt", retries).
			Dur("delay", d).Str("error", err.Error()).Msg("twilio request failed, retrying")
		if err := c.sleep(ctx, d); err != nil {
			return fmt.Errorf("twilio: GET %s: %w", r.path, err)
		}
	}
}

// attemptResult is the outcome of one attempt.
type attemptResult struct {
	status     int
	retryAfter string
	throttled  bool    // a 429 with code 20429
	body       *[]byte // the 2xx body, when err is nil
	err        error
}

// attempt sends one request under a limiter slot and reads its body.
func (c *Client) attempt(ctx context.Context, r *request, prio, n int) (res attemptResult) {
	sl, err := c.lim.acquire(ctx, prio)
	if err != nil {
		return attemptResult{err: err}
	}
	c.peak.observe(c.inflight.Add(1))
	out := failedOutcome()
	defer func() {
		c.inflight.Add(-1)
		sl.done(out)
	}()

	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, r.u.String(), nil)
	if err != nil {
		return attemptResult{err: fmt.Errorf("twilio: GET %s: cannot build request", r.path)}
	}
	req.SetBasicAuth(c.creds.basicAuth())
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)

	start := time.Now()
	c.requests.Add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error's text holds the full URL
		}
		if !errors.Is(err, ErrForeignHost) && ctx.Err() == nil {
			c.networkErrors.Add(1)
		}
		err = &scrubbedError{text: c.scrub(r.u)(err.Error()), err: err}
		c.log.Debug().Str("path", r.logURL).Int("attempt", n).Dur("duration", time.Since(start)).Str("error", err.Error()).Msg("twilio request failed")
		return attemptResult{err: &transportError{method: http.MethodGet, path: r.path, err: err}}
	}
	defer resp.Body.Close()
	c.reached.Store(true)
	res.status = resp.StatusCode
	concurrent := concurrentRequests(resp.Header)
	body, err := readBody(actx, c.mem, resp.Body)
	c.log.Debug().Str("path", r.logURL).Int("attempt", n).Int("status", res.status).
		Dur("duration", time.Since(start)).Msg("twilio request")
	switch {
	case res.status == http.StatusTooManyRequests:
		c.throttled.Add(1)
	case res.status >= 500:
		c.serverErrors.Add(1)
	}
	if errors.Is(err, errBodyTooLarge) {
		res.err = &UntrustedError{Method: http.MethodGet, Path: r.path, Reason: err.Error()}
		return res
	}
	if err != nil {
		if ctx.Err() == nil {
			c.networkErrors.Add(1)
		}
		res.err = &transportError{method: http.MethodGet, path: r.path, err: err}
		return res
	}
	if res.status < 200 || res.status > 299 {
		apiErr := newAPIError(http.MethodGet, r.path, res.status, *body, c.scrub(r.u))
		putBody(body)
		res.err = apiErr
		res.retryAfter = resp.Header.Get("Retry-After")
		switch {
		case res.status == http.StatusTooManyRequests && apiErr.Code == CodeTooManyConcurrentRequests:
			res.throttled = true
			out = throttledOutcome(concurrent)
		case res.status < 500 && res.status != http.StatusTooManyRequests:
			out = okOutcome(concurrent, 0) // processed by the API: the limit held
		}
		if res.status == http.StatusNotFound && !apiErr.Twilio {
			res.err = &UntrustedError{Method: http.MethodGet, Path: r.path,
				Reason: "404 without Twilio's error JSON (a proxy, not the API?)"}
		}
		return res
	}
	out = okOutcome(concurrent, 0)
	res.body = body
	return res
}

// scrub returns a function removing from text every sensitive value of
// u and every form of the credentials' secrets.
func (c *Client) scrub(u *url.URL) func(string) string {
	return scrubber(sensitiveValues(u), c.scrubSecrets)
}

// unreachable reports whether err is a failure to connect at all: the
// connection refused, or the host name not resolved.
func unreachable(err error) bool {
	var dnsErr *net.DNSError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &dnsErr)
}
