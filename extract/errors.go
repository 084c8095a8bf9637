package extract

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Sentinel errors matched with errors.Is.
var (
	// ErrNotFound matches an *APIError with status 404. Jobs treat it on a
	// child list as "the parent was deleted".
	ErrNotFound = errors.New("twilio: not found")
	// ErrUnauthorized matches an *APIError with status 401 or 403.
	ErrUnauthorized = errors.New("twilio: unauthorized")
	// ErrRateLimited matches an *APIError with status 429.
	ErrRateLimited = errors.New("twilio: rate limited")
	// ErrForeignHost is wrapped by the error returned when a next_page_url or
	// a redirect points to another scheme or host than Config.BaseURL; no
	// request is sent there, so credentials never leave the API host.
	ErrForeignHost = errors.New("twilio: refusing to send credentials to a foreign host")
)

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
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		b.WriteString(" (check " + envAccountSID + " with " + envAuthToken + ", or " + envAPIKey + " and " + envAPISecret + ")")
	}
	return b.String()
}

// Is reports whether the error matches ErrNotFound (404), ErrUnauthorized
// (401, 403) or ErrRateLimited (429).
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound
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
	var tw struct {
		Code     json.Number `json:"code"`
		Message  string      `json:"message"`
		MoreInfo string      `json:"more_info"`
	}
	if json.Unmarshal(body, &tw) == nil {
		if n, err := tw.Code.Int64(); err == nil {
			e.Code = int(n)
		}
		e.Message = scrub(tw.Message)
		e.MoreInfo = scrub(tw.MoreInfo)
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

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

// decodeError is a 2xx response whose body could not be decoded.
type decodeError struct {
	method, path string
	err          error
}

func (e *decodeError) Error() string {
	return fmt.Sprintf("twilio: %s %s: decoding response: %v", e.method, e.path, e.err)
}

func (e *decodeError) Unwrap() error { return e.err }

// errBodyTooLarge is returned when a response exceeds maxBodyBytes.
var errBodyTooLarge = errors.New("response body too large")
