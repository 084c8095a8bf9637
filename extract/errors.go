package extract

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Sentinel errors matched with errors.Is.
var (
	// ErrNotFound matches an *APIError with status 404 and Twilio's error
	// JSON. Jobs treat it on a child list as "the parent was deleted"; a
	// 404 without Twilio's error JSON (a proxy's page) is an *UntrustedError.
	ErrNotFound = errors.New("twilio: not found")
	// ErrUnauthorized matches an *APIError with status 401 or 403.
	ErrUnauthorized = errors.New("twilio: unauthorized")
	// ErrRateLimited matches an *APIError with status 429.
	ErrRateLimited = errors.New("twilio: rate limited")
	// ErrForeignHost is wrapped by the error returned when a next_page_url or
	// a redirect points to another scheme or host than Config.BaseURL; no
	// request is sent there, so credentials never leave the API host.
	ErrForeignHost = errors.New("twilio: refusing to send credentials to a foreign host")
	// ErrUntrusted matches an *UntrustedError.
	ErrUntrusted = errors.New("twilio: untrustworthy answer")
	// ErrUnreachable is wrapped by the error of a first request that could
	// not connect at all (refused, or the host not found): it is not
	// retried.
	ErrUnreachable = errors.New("twilio: unreachable")
)

// CodeTooManyConcurrentRequests is Twilio's error code for a request over
// the account's concurrency limit (a 429 that is always safe to retry).
const CodeTooManyConcurrentRequests = 20429

// APIError is a non-2xx response from the Twilio API. It carries no
// credentials, query string, identities or addresses: Path has non-SID path
// segments replaced by "{id}", and Message has those values scrubbed.
type APIError struct {
	Status   int    // HTTP status code
	Code     int    // Twilio error code, e.g. 20404 (0 if absent)
	Message  string // Twilio error message (scrubbed)
	MoreInfo string // documentation link for Code
	Method   string // HTTP method
	Path     string // redacted path only, no query
	// Twilio reports whether the body was Twilio's error JSON (a numeric
	// code and the status), rather than some proxy's page.
	Twilio bool
}

// Error formats the error, e.g.
// "twilio: GET /v1/Services/IS.../Users: 404 (code 20404): The requested resource ... was not found".
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "twilio: %s %s: %d", e.Method, e.Path, e.Status)
	if e.Code != 0 {
		fmt.Fprintf(&b, " (code %d)", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Is reports whether the error matches ErrNotFound (a Twilio 404),
// ErrUnauthorized (401, 403) or ErrRateLimited (429).
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound && e.Twilio
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	}
	return false
}

// newAPIError builds an APIError from a Twilio error body
// ({"code":..., "message":..., "more_info":..., "status":...}); scrub removes
// sensitive values from the free text.
func newAPIError(method, path string, status int, body []byte, scrub func(string) string) *APIError {
	e := &APIError{Status: status, Method: method, Path: path}
	var p fastjson.Parser
	if v, err := p.ParseBytes(body); err == nil && v.Type() == fastjson.TypeObject {
		code, cerr := intField(v, "code")
		st, serr := intField(v, "status")
		e.Twilio = cerr == nil && serr == nil && st == status
		if cerr == nil {
			e.Code = code
		}
		e.Message = truncate(scrub(string(v.GetStringBytes("message"))), 300)
		e.MoreInfo = truncate(scrub(string(v.GetStringBytes("more_info"))), 300)
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// intField reads an integer field of a JSON object.
func intField(v *fastjson.Value, name string) (int, error) {
	f := v.Get(name)
	if f == nil {
		return 0, fmt.Errorf("no %s", name)
	}
	return f.Int()
}

// truncate cuts s to at most n bytes, at a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// UntrustedError is an answer the client cannot trust to be the whole
// truth: a page of another list, a list member that is not an object, a
// 404 that is not Twilio's, a page token cycle, a list longer than Twilio
// allows. It is retried, and then fails the run rather than shortening it.
type UntrustedError struct {
	Method, Path string // redacted path only, no query
	Reason       string
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("twilio: %s %s: untrustworthy answer: %s", e.Method, e.Path, e.Reason)
}

// Is matches ErrUntrusted.
func (e *UntrustedError) Is(target error) bool { return target == ErrUntrusted }

// transportError is a failed round trip or body read (no usable response).
// It never includes the URL: the query may hold identities or addresses.
type transportError struct {
	method, path string
	err          error
}

func (e *transportError) Error() string {
	return fmt.Sprintf("twilio: %s %s: %v", e.method, e.path, e.err)
}

func (e *transportError) Unwrap() error { return e.err }

// decodeError is a 2xx response whose body is not valid JSON.
type decodeError struct {
	method, path string
	err          error
}

func (e *decodeError) Error() string {
	return fmt.Sprintf("twilio: %s %s: decoding response: %v", e.method, e.path, e.err)
}

func (e *decodeError) Unwrap() error { return e.err }

// RetryAfterError is returned when the API asks to wait, before a retry,
// longer than the client is configured to wait. It wraps the answer.
type RetryAfterError struct {
	Method, Path string
	After, Max   string
	Err          error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("twilio: %s %s: the API asks to retry after %s, longer than the %s convsync waits", e.Method, e.Path, e.After, e.Max)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// scrubbedError is an error whose text was scrubbed of sensitive values,
// still matching what it wraps.
type scrubbedError struct {
	text string
	err  error
}

func (e *scrubbedError) Error() string { return e.text }
func (e *scrubbedError) Unwrap() error { return e.err }
