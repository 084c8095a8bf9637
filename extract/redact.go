package extract

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/convsync/convsync/internal/secrets"
)

// sidRE matches a Twilio SID: two upper-case letters and 32 hex digits.
var sidRE = regexp.MustCompile(`^[A-Z]{2}[0-9a-fA-F]{32}$`)

// staticSegments are the fixed path segments of the endpoints used here.
var staticSegments = map[string]bool{
	"v1": true, "Services": true, "Users": true, "Conversations": true,
	"Participants": true, "ParticipantConversations": true, "Configuration": true,
}

// safeQuery lists query parameters whose values may be logged. Page
// tokens are not among them: they are chosen by the server, and a hostile
// or buggy one can put anything in them.
var safeQuery = map[string]bool{
	"PageSize": true, "Page": true,
	"StartDate": true, "EndDate": true, "State": true,
}

// redactPath returns u's path with every segment that is neither a known
// endpoint name nor a SID replaced by "{id}".
func redactPath(u *url.URL) string {
	segs := strings.Split(u.EscapedPath(), "/")
	for i, s := range segs {
		if s == "" {
			continue
		}
		if un, err := url.PathUnescape(s); err == nil && (staticSegments[un] || sidRE.MatchString(un)) {
			segs[i] = un
			continue
		}
		segs[i] = "{id}"
	}
	return strings.Join(segs, "/")
}

// redactURL returns path and query of u safe for logs: non-SID path segments
// become "{id}" and the values of query parameters other than paging ones
// (in particular Identity, Address and PageToken) become "REDACTED". Scheme, host and
// any user info are dropped.
func redactURL(u *url.URL) string {
	p := redactPath(u)
	if u.RawQuery == "" {
		return p
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return p + "?REDACTED"
	}
	for k, vs := range q {
		if !safeQuery[k] {
			for i := range vs {
				vs[i] = "REDACTED"
			}
		}
	}
	return p + "?" + q.Encode()
}

// sensitiveValues returns the strings of u that must not appear in output:
// non-SID path segments and non-paging query values, raw and escaped.
func sensitiveValues(u *url.URL) []string {
	var out []string
	add := func(v string) {
		if v == "" {
			return
		}
		out = append(out, v, url.PathEscape(v), url.QueryEscape(v))
	}
	for _, s := range strings.Split(u.EscapedPath(), "/") {
		un, err := url.PathUnescape(s)
		if err != nil {
			add(s)
			continue
		}
		if s != "" && !staticSegments[un] && !sidRE.MatchString(un) {
			add(un)
			out = append(out, s)
		}
	}
	if q, err := url.ParseQuery(u.RawQuery); err == nil {
		for k, vs := range q {
			if !safeQuery[k] {
				for _, v := range vs {
					add(v)
				}
			}
		}
	}
	return out
}

// scrubber returns a function replacing each of the sensitive values (the
// longest first) with "{redacted}".
func scrubber(values ...[]string) func(string) string {
	return secrets.NewScrubber(values...).Scrub
}
