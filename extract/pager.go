package extract

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"net/http"
	"net/url"
	"strconv"

	"github.com/valyala/fastjson"
)

// list describes one list endpoint: the key of its list (which is also
// what meta.key must say), its maximum PageSize (from the OpenAPI spec),
// and the most items Twilio lets such a list hold (0: no limit).
type list struct {
	key      string
	pageSize int
	maxItems int
	// chain marks the long lists (services, users, conversations) that
	// must be walked one page after another from the start of a run: their
	// requests go before those of child lists.
	chain bool
}

// Maximum PageSize of each list endpoint, from Twilio's OpenAPI spec;
// every list is read at its maximum.
const (
	PageSizeServices                 = 100
	PageSizeUsers                    = 50
	PageSizeUserConversations        = 50
	PageSizeConversations            = 100
	PageSizeParticipants             = 100
	PageSizeParticipantConversations = 50
)

// MaxListItems is the most items Twilio lets a user's conversations or a
// conversation's participants hold.
const MaxListItems = 1000

// The list endpoints convsync reads.
var (
	servicesList                 = list{key: "services", pageSize: PageSizeServices, chain: true}
	usersList                    = list{key: "users", pageSize: PageSizeUsers, chain: true}
	userConversationsList        = list{key: "conversations", pageSize: PageSizeUserConversations, maxItems: MaxListItems}
	conversationsList            = list{key: "conversations", pageSize: PageSizeConversations, chain: true}
	participantsList             = list{key: "participants", pageSize: PageSizeParticipants, maxItems: MaxListItems}
	participantConversationsList = list{key: "conversations", pageSize: PageSizeParticipantConversations}
)

// PageOf is one page of a list as a walk yields it: the page, and where
// the walk would go on from after it ("" after the last page). Next is
// what a checkpoint records to resume a walk (see the From methods).
type PageOf struct {
	*Page
	Next string
}

// walk lazily walks a list starting at first: query parameters are only
// on first; each later page is fetched from meta.next_page_url as given,
// provided it is on BaseURL's scheme and host. Every page is checked
// before it is yielded (decodePage, whose refusals are retried like any
// transient failure); the walk as a whole fails, rather than ending early,
// on a page token cycle or a list longer than Twilio allows, which asking
// again cannot change. An error is yielded once and ends the sequence.
// The caller releases each page.
func (c *Client) walk(ctx context.Context, l list, first *url.URL) iter.Seq2[PageOf, error] {
	return func(yield func(PageOf, error) bool) {
		ticket := c.mem.walk()
		seed := maphash.MakeSeed()
		seen := map[uint64]struct{}{maphash.String(seed, first.String()): {}}
		u, items, prio := first, 0, prioFirstPage
		if l.chain {
			prio = prioChain
		}
		for {
			r := c.newRequest(u, ticket, prio)
			var pg PageOf
			err := c.get(ctx, r, func(body []byte) error {
				var err error
				pg, err = c.decodePage(body, l, r, ticket)
				return err
			})
			if err != nil {
				yield(PageOf{}, err)
				return
			}
			c.pages.Add(1)
			items += len(pg.Items)
			untrusted := func(reason string) bool {
				pg.Release()
				return yield(PageOf{}, &UntrustedError{Method: http.MethodGet, Path: r.path, Reason: reason})
			}
			if l.maxItems > 0 && items > l.maxItems {
				untrusted(fmt.Sprintf("the %s list is longer than Twilio allows (%d)", l.key, l.maxItems))
				return
			}
			var next *url.URL
			if pg.Next != "" {
				if next, err = c.nextURL(pg.Next); err != nil {
					pg.Release()
					yield(PageOf{}, err)
					return
				}
				h := maphash.String(seed, next.String())
				if _, dup := seen[h]; dup {
					untrusted("next_page_url repeats an earlier page (a page token cycle)")
					return
				}
				seen[h] = struct{}{}
				pg.Next = next.String()
			}
			c.log.Debug().Str("path", r.logURL).Int("items", len(pg.Items)).Bool("more", next != nil).Msg("twilio page")
			if !yield(pg, nil) || next == nil {
				return
			}
			u = next
			if !l.chain {
				prio = prioNextPage
			}
		}
	}
}

// decodePage decodes a list page once, into a pooled parser, and checks
// that it can be trusted: a JSON object whose meta.key names the list
// asked for, whose list is an array of objects (no null or other member),
// and whose meta.next_page_url is a string or null.
func (c *Client) decodePage(body []byte, l list, r *request, ticket uint64) (PageOf, error) {
	p := getParser()
	v, err := p.ParseBytes(body)
	if err != nil {
		parsers.Put(p)
		return PageOf{}, &decodeError{method: http.MethodGet, path: r.path, err: errors.New("invalid JSON")}
	}
	scrub := c.scrub(r.u)
	fail := func(format string, args ...any) (PageOf, error) {
		parsers.Put(p)
		return PageOf{}, &UntrustedError{Method: http.MethodGet, Path: r.path, Reason: scrub(fmt.Sprintf(format, args...))}
	}
	if v.Type() != fastjson.TypeObject {
		return fail("the page is a JSON %s, not an object", v.Type())
	}
	meta := v.Get("meta")
	if meta == nil || meta.Type() != fastjson.TypeObject {
		return fail("the page has no meta object")
	}
	if key := meta.Get("key"); key == nil || key.Type() != fastjson.TypeString || string(key.GetStringBytes()) != l.key {
		return fail("meta.key is %s, not %q: the page is of another list", describe(key), l.key)
	}
	arr := v.Get(l.key)
	if arr == nil || arr.Type() != fastjson.TypeArray {
		return fail("the page has no %q array", l.key)
	}
	items, _ := arr.Array()
	for i, it := range items {
		if it.Type() != fastjson.TypeObject {
			return fail("member %d of the %q list is %s, not an object", i, l.key, describe(it))
		}
	}
	var next string
	switch nu := meta.Get("next_page_url"); {
	case nu == nil:
		return fail("meta has no next_page_url")
	case nu.Type() == fastjson.TypeNull:
	case nu.Type() == fastjson.TypeString:
		next = string(nu.GetStringBytes())
	default:
		return fail("meta.next_page_url is %s, not a string or null", describe(nu))
	}
	if next != "" && len(items) == 0 {
		return fail("an empty page that is not the last")
	}
	held := int64(len(body)) * decodedFactor
	c.mem.hold(ticket, held)
	return PageOf{Page: &Page{Items: items, Bytes: int64(len(body)), parser: p, b: c.mem, ticket: ticket, held: held}, Next: next}, nil
}

// describe names a JSON value's kind for an error, quoting short strings
// only (a value chosen by the server is not echoed at length).
func describe(v *fastjson.Value) string {
	switch {
	case v == nil:
		return "missing"
	case v.Type() == fastjson.TypeString:
		s := string(v.GetStringBytes())
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return strconv.Quote(s)
	default:
		return v.Type().String()
	}
}

// nextURL parses a next_page_url and refuses one outside BaseURL's origin.
func (c *Client) nextURL(next string) (*url.URL, error) {
	u, err := c.base.Parse(next)
	if err != nil {
		return nil, errors.New("twilio: invalid next_page_url") // the URL may hold identities
	}
	if !sameOrigin(u, c.base) {
		// The foreign host is not named: the server chose it, and it could
		// carry anything.
		return nil, fmt.Errorf("twilio: next_page_url on another host than the base URL: %w", ErrForeignHost)
	}
	return u, nil
}

// start returns a walk of l from its first page, with extra query
// parameters, or from a next-page URL a walk yielded earlier (from).
func (c *Client) start(ctx context.Context, l list, from string, extra url.Values, segs ...string) iter.Seq2[PageOf, error] {
	if from != "" {
		u, err := c.nextURL(from)
		if err != nil {
			return errSeq(err)
		}
		return c.walk(ctx, l, u)
	}
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	q.Set("PageSize", strconv.Itoa(l.pageSize))
	u, err := c.endpoint(q, segs...)
	if err != nil {
		return errSeq(err)
	}
	return c.walk(ctx, l, u)
}

// errSeq yields a single error.
func errSeq(err error) iter.Seq2[PageOf, error] {
	return func(yield func(PageOf, error) bool) { yield(PageOf{}, err) }
}

// Services lists the Conversations services of the account (GET /v1/Services).
func (c *Client) Services(ctx context.Context) iter.Seq2[PageOf, error] {
	return c.start(ctx, servicesList, "", nil, "v1", "Services")
}

// Users lists the users of a service (GET /v1/Services/{IS}/Users), from
// the start or, with from, from a page a walk yielded earlier.
func (c *Client) Users(ctx context.Context, serviceSID, from string) iter.Seq2[PageOf, error] {
	return c.start(ctx, usersList, from, nil, "v1", "Services", serviceSID, "Users")
}

// UserConversations lists the conversations of a user, given by SID or
// identity (GET /v1/Services/{IS}/Users/{US}/Conversations).
func (c *Client) UserConversations(ctx context.Context, serviceSID, userSID string) iter.Seq2[PageOf, error] {
	return c.start(ctx, userConversationsList, "", nil, "v1", "Services", serviceSID, "Users", userSID, "Conversations")
}

// Conversations lists the conversations of a service
// (GET /v1/Services/{IS}/Conversations), from the start or from a page a
// walk yielded earlier.
func (c *Client) Conversations(ctx context.Context, serviceSID, from string) iter.Seq2[PageOf, error] {
	return c.start(ctx, conversationsList, from, nil, "v1", "Services", serviceSID, "Conversations")
}

// Participants lists the participants of a conversation
// (GET /v1/Services/{IS}/Conversations/{CH}/Participants).
func (c *Client) Participants(ctx context.Context, serviceSID, conversationSID string) iter.Seq2[PageOf, error] {
	return c.start(ctx, participantsList, "", nil, "v1", "Services", serviceSID, "Conversations", conversationSID, "Participants")
}

// Subject is who to look up in ParticipantConversations: exactly one of
// Identity (a chat identity) or Address (e.g. "+15551234567" or
// "whatsapp:+15551234567").
type Subject struct {
	Identity string
	Address  string
}

// Kind is "identity" or "address", and Value the subject's value.
func (s Subject) Kind() string {
	if s.Address != "" {
		return "address"
	}
	return "identity"
}

// Value is the identity or the address.
func (s Subject) Value() string {
	if s.Address != "" {
		return s.Address
	}
	return s.Identity
}

// ParticipantConversations lists the conversations a participant takes part
// in (GET /v1/Services/{IS}/ParticipantConversations?Identity=|Address=).
func (c *Client) ParticipantConversations(ctx context.Context, serviceSID string, s Subject) iter.Seq2[PageOf, error] {
	q := url.Values{}
	switch {
	case s.Identity != "" && s.Address != "":
		return errSeq(errors.New("subject: set only one of Identity and Address"))
	case s.Identity != "":
		q.Set("Identity", s.Identity)
	case s.Address != "":
		q.Set("Address", s.Address)
	default:
		return errSeq(errors.New("subject: set one of Identity and Address"))
	}
	return c.start(ctx, participantConversationsList, "", q, "v1", "Services", serviceSID, "ParticipantConversations")
}
