// Package extract is convsync's client for the Twilio Conversations v1 REST
// API. It pages through list endpoints lazily (iter.Seq2), retries transient
// failures with jittered exponential backoff, caps requests in flight, turns
// non-2xx responses into *APIError, and never sends credentials to another
// host nor prints credentials, identities or addresses.
package extract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// DefaultBaseURL is the Twilio Conversations API root.
const DefaultBaseURL = "https://conversations.twilio.com"

// Defaults applied by New to zero Config fields.
const (
	DefaultConcurrency    = 8
	DefaultRequestTimeout = 30 * time.Second
	DefaultMaxRetries     = 8
	DefaultBaseBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff     = 20 * time.Second
)

// maxBodyBytes caps a response body.
const maxBodyBytes = 64 << 20

// userAgent is sent with every request.
const userAgent = "convsync"

// Object is one API resource as decoded JSON; numbers are json.Number.
type Object = map[string]any

// Config configures a Client. Zero fields take the documented defaults.
type Config struct {
	// BaseURL is the API root, default DefaultBaseURL. It must be an absolute
	// http or https URL without user info, query or fragment.
	BaseURL string
	// Credentials authenticate every request.
	Credentials Credentials
	// HTTPClient is optional; it is copied, and the copy refuses redirects to
	// another host.
	HTTPClient *http.Client
	// Concurrency is the maximum number of requests in flight across the
	// client, default 8.
	Concurrency int
	// RequestTimeout bounds each attempt (request and body read), default 30s.
	RequestTimeout time.Duration
	// MaxRetries is the number of retries after the first attempt, default 8;
	// a negative value disables retries.
	MaxRetries int
	// BaseBackoff and MaxBackoff shape the full-jitter backoff
	// rand(0, min(MaxBackoff, BaseBackoff*2^n)); defaults 250ms and 20s. A
	// Retry-After header (capped at 60s) raises the delay.
	BaseBackoff, MaxBackoff time.Duration
	// Logger receives debug logs per request and page and warnings per retry.
	// Paths are redacted and credentials are never logged.
	Logger zerolog.Logger
	// Sleep waits between retries; default a timer honouring ctx. For tests.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Stats is a snapshot of a Client's counters.
type Stats struct {
	Requests      int64 // attempts sent
	Retries       int64 // attempts repeated after a transient failure
	Pages         int64 // list pages successfully decoded
	Throttled     int64 // 429 responses
	ServerErrors  int64 // 5xx responses
	NetworkErrors int64 // transport failures, including short bodies
}

// Client calls the Twilio Conversations API. It is safe for concurrent use.
type Client struct {
	base        *url.URL
	creds       Credentials
	hc          *http.Client
	sem         chan struct{}
	timeout     time.Duration
	maxRetries  int
	baseBackoff time.Duration
	maxBackoff  time.Duration
	log         zerolog.Logger
	sleep       func(context.Context, time.Duration) error

	requests, retries, pages, throttled, serverErrors, networkErrors atomic.Int64
}

// New validates cfg, applies defaults and returns a Client.
func New(cfg Config) (*Client, error) {
	raw := cfg.BaseURL
	if raw == "" {
		raw = DefaultBaseURL
	}
	base, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("extract: BaseURL is not a valid URL")
	}
	switch {
	case base.Scheme != "http" && base.Scheme != "https":
		return nil, errors.New("extract: BaseURL must be an absolute http or https URL")
	case base.Host == "":
		return nil, errors.New("extract: BaseURL has no host")
	case base.User != nil:
		return nil, errors.New("extract: BaseURL must not contain credentials")
	case base.RawQuery != "" || base.Fragment != "" || base.ForceQuery:
		return nil, errors.New("extract: BaseURL must not have a query or fragment")
	}
	base.Path = strings.TrimRight(base.Path, "/")
	base.RawPath = ""
	if err := cfg.Credentials.validate(); err != nil {
		return nil, err
	}

	c := &Client{
		base:        base,
		creds:       cfg.Credentials,
		timeout:     cfg.RequestTimeout,
		maxRetries:  cfg.MaxRetries,
		baseBackoff: cfg.BaseBackoff,
		maxBackoff:  cfg.MaxBackoff,
		log:         cfg.Logger,
		sleep:       cfg.Sleep,
	}
	n := cfg.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	c.sem = make(chan struct{}, n)
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.baseBackoff <= 0 {
		c.baseBackoff = DefaultBaseBackoff
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = DefaultMaxBackoff
	}
	if c.maxBackoff < c.baseBackoff {
		c.maxBackoff = c.baseBackoff
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient
		c.hc = &hc
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = n
		c.hc = &http.Client{Transport: tr}
	}
	c.hc.CheckRedirect = c.checkRedirect
	return c, nil
}

// Stats returns a snapshot of the counters; safe to call while running.
func (c *Client) Stats() Stats {
	return Stats{
		Requests:      c.requests.Load(),
		Retries:       c.retries.Load(),
		Pages:         c.pages.Load(),
		Throttled:     c.throttled.Load(),
		ServerErrors:  c.serverErrors.Load(),
		NetworkErrors: c.networkErrors.Load(),
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
			return nil, errors.New("extract: empty path parameter")
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
		return nil, errors.New("extract: cannot build request URL")
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

func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) release() { <-c.sem }

// get fetches u, retrying transient failures, and hands the 2xx body to
// decode (inside the retry loop, so malformed JSON is retried).
func (c *Client) get(ctx context.Context, u *url.URL, decode func([]byte) error) error {
	path := redactPath(u)
	logURL := redactURL(u)
	for retries := 0; ; retries++ {
		status, retryAfter, err := c.attempt(ctx, u, path, logURL, retries+1, decode)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("twilio: GET %s: %w", path, ctx.Err())
		}
		ok, reason := shouldRetry(retries, c.maxRetries, status, err)
		if !ok {
			if retries > 0 {
				return fmt.Errorf("%w (giving up after %d attempts: %s)", err, retries+1, reason)
			}
			return err
		}
		d := backoff(c.baseBackoff, c.maxBackoff, retries, parseRetryAfter(retryAfter, time.Now()), rand.Int64N)
		c.retries.Add(1)
		c.log.Warn().Str("path", logURL).Str("reason", reason).Int("attempt", retries+1).
			Dur("delay", d).Err(err).Msg("twilio request failed, retrying")
		if err := c.sleep(ctx, d); err != nil {
			return fmt.Errorf("twilio: GET %s: %w", path, err)
		}
	}
}

// attempt performs one request. For non-2xx it returns an *APIError and the
// Retry-After header.
func (c *Client) attempt(ctx context.Context, u *url.URL, path, logURL string, n int, decode func([]byte) error) (status int, retryAfter string, err error) {
	if err := c.acquire(ctx); err != nil {
		return 0, "", err
	}
	defer c.release()

	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, "", fmt.Errorf("twilio: GET %s: cannot build request", path)
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
		c.log.Debug().Str("path", logURL).Int("attempt", n).Dur("duration", time.Since(start)).Err(err).Msg("twilio request failed")
		return 0, "", &transportError{method: http.MethodGet, path: path, err: err}
	}
	defer resp.Body.Close()
	status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err == nil && len(body) > maxBodyBytes {
		err = errBodyTooLarge
	}
	c.log.Debug().Str("path", logURL).Int("attempt", n).Int("status", status).Int("bytes", len(body)).
		Dur("duration", time.Since(start)).Msg("twilio request")
	switch {
	case status == http.StatusTooManyRequests:
		c.throttled.Add(1)
	case status >= 500:
		c.serverErrors.Add(1)
	}
	if errors.Is(err, errBodyTooLarge) {
		return status, "", &decodeError{method: http.MethodGet, path: path, err: err}
	}
	if err != nil {
		if ctx.Err() == nil {
			c.networkErrors.Add(1)
		}
		return status, "", &transportError{method: http.MethodGet, path: path, err: err}
	}
	if status < 200 || status > 299 {
		scrub := scrubber(sensitiveValues(u), c.creds.secrets())
		return status, resp.Header.Get("Retry-After"), newAPIError(http.MethodGet, path, status, body, scrub)
	}
	if err := decode(body); err != nil {
		return status, "", &decodeError{method: http.MethodGet, path: path, err: err}
	}
	return status, "", nil
}
