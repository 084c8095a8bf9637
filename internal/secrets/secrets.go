// Package secrets knows every form in which a credential can appear in
// text, and removes them all: the secret itself, URL-escaped, and the
// base64 of "user:secret" that an HTTP Basic Authorization header
// carries, in the standard and URL-safe alphabets, padded or not.
package secrets

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
)

// Redacted replaces a removed secret.
const Redacted = "{redacted}"

// Forms returns the forms of secret (and, with a user, of the Basic
// credentials user:secret) that must never appear in output. An empty
// secret has none.
func Forms(user, secret string) []string {
	if secret == "" {
		return nil
	}
	out := []string{secret, url.QueryEscape(secret), url.PathEscape(secret)}
	pairs := []string{secret}
	if user != "" {
		pairs = append(pairs, user+":"+secret)
	}
	for _, p := range pairs {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			b := enc.EncodeToString([]byte(p))
			out = append(out, b, url.QueryEscape(b))
		}
	}
	return out
}

// Scrubber removes values from text, the longest first so that no value
// is left half replaced by a shorter one it contains.
type Scrubber struct{ values []string }

// NewScrubber returns a Scrubber of the non-empty values given.
func NewScrubber(values ...[]string) *Scrubber {
	var all []string
	for _, vs := range values {
		for _, v := range vs {
			if v != "" {
				all = append(all, v)
			}
		}
	}
	slices.SortFunc(all, func(a, b string) int { return len(b) - len(a) })
	return &Scrubber{values: slices.Compact(all)}
}

// Scrub returns s with every value replaced by Redacted.
func (sc *Scrubber) Scrub(s string) string {
	if sc == nil {
		return s
	}
	for _, v := range sc.values {
		s = strings.ReplaceAll(s, v, Redacted)
	}
	return s
}
