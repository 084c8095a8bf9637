package extract

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// shouldRetry decides whether a failed attempt is retried. retries is the
// number of retries already made; status is the HTTP status (0 when no
// response was received); err is the attempt's error (nil on success). It is
// pure: the caller handles cancellation of its own context first.
func shouldRetry(retries, maxRetries, status int, err error) (bool, string) {
	retry, reason := classify(status, err)
	if retry && retries >= maxRetries {
		return false, "retries exhausted: " + reason
	}
	return retry, reason
}

// classify reports whether an outcome is transient, and why.
func classify(status int, err error) (bool, string) {
	if err == nil {
		return false, "ok"
	}
	var (
		apiErr *APIError
		tErr   *transportError
		dErr   *decodeError
	)
	switch {
	case errors.Is(err, context.Canceled):
		return false, "canceled"
	case errors.Is(err, ErrForeignHost):
		return false, "foreign host"
	case errors.Is(err, ErrUntrusted):
		return true, "untrustworthy answer"
	case errors.As(err, &tErr):
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return true, "short body"
		case errors.Is(err, context.DeadlineExceeded):
			return true, "timeout"
		}
		return true, "network error"
	case errors.As(err, &dErr):
		return true, "invalid JSON"
	case errors.As(err, &apiErr):
		status = apiErr.Status
	}
	switch status {
	case http.StatusTooManyRequests:
		return true, "rate limited (429)"
	case http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, "server error (" + strconv.Itoa(status) + ")"
	case http.StatusUnauthorized, http.StatusForbidden:
		return false, "unauthorized (" + strconv.Itoa(status) + ")"
	case http.StatusNotFound:
		return false, "not found (404)"
	}
	return false, "status " + strconv.Itoa(status)
}

// backoff returns the delay before retry number n (0-based): full jitter,
// rand(0, min(maxD, base*2^n)), raised to retryAfter when the server sent
// one (the caller refuses one it will not wait out). randN returns a
// value in [0, n).
func backoff(base, maxD time.Duration, n int, retryAfter time.Duration, randN func(int64) int64) time.Duration {
	ceiling := base
	for i := 0; i < n && ceiling < maxD; i++ {
		if ceiling > maxD/2 {
			ceiling = maxD
			break
		}
		ceiling *= 2
	}
	if ceiling > maxD {
		ceiling = maxD
	}
	var d time.Duration
	if ceiling > 0 {
		d = time.Duration(randN(int64(ceiling) + 1))
	}
	return max(d, retryAfter)
}

// parseRetryAfter parses a Retry-After header: delay seconds or an HTTP
// date. It returns 0 when absent, invalid or in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(24*time.Hour/time.Second) {
			return 24 * time.Hour
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
