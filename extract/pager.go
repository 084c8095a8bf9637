package extract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"strconv"
)

// Maximum PageSize of each list endpoint (from the OpenAPI spec).
const (
	pageSizeServices                 = 100
	pageSizeUsers                    = 50
	pageSizeUserConversations        = 50
	pageSizeConversations            = 100
	pageSizeParticipants             = 100
	pageSizeParticipantConversations = 50
)

// page is one decoded list page.
type page[T any] struct {
	items []T
	next  string
}

// decodePage decodes {"<key>": [...], "meta": {"key": ..., "next_page_url": ...}}.
// The list key is meta.key, falling back to wantKey.
func decodePage[T any](body []byte, wantKey string) (page[T], error) {
	var p page[T]
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return p, err
	}
	key := wantKey
	if raw, ok := top["meta"]; ok {
		var meta struct {
			Key         string  `json:"key"`
			NextPageURL *string `json:"next_page_url"`
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			return p, fmt.Errorf("meta: %w", err)
		}
		if meta.Key != "" {
			key = meta.Key
		}
		if meta.NextPageURL != nil {
			p.next = *meta.NextPageURL
		}
	}
	raw, ok := top[key]
	if !ok {
		return p, fmt.Errorf("page has no %q list", key)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&p.items); err != nil {
		return page[T]{}, fmt.Errorf("%q list: %w", key, err)
	}
	return p, nil
}

// paginate lazily walks a list starting at first: query parameters are only
// on first; each later page is fetched from meta.next_page_url as given,
// provided it is on BaseURL's scheme and host. Items are yielded one at a
// time; an error is yielded once and ends the sequence.
func paginate[T any](ctx context.Context, c *Client, first *url.URL, key string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		u := first
		seen := map[string]bool{}
		for {
			seen[u.String()] = true
			var p page[T]
			err := c.get(ctx, u, func(b []byte) error {
				var err error
				p, err = decodePage[T](b, key)
				return err
			})
			if err != nil {
				yield(zero, err)
				return
			}
			c.pages.Add(1)
			c.log.Debug().Str("path", redactURL(u)).Int("items", len(p.items)).Bool("more", p.next != "").Msg("twilio page")
			for _, it := range p.items {
				if !yield(it, nil) {
					return
				}
			}
			if p.next == "" {
				return
			}
			next, err := c.nextURL(p.next)
			if err == nil && seen[next.String()] {
				err = fmt.Errorf("twilio: GET %s: next_page_url repeats an earlier page", redactPath(u))
			}
			if err != nil {
				yield(zero, err)
				return
			}
			u = next
		}
	}
}

// nextURL parses a next_page_url and refuses one outside BaseURL's origin.
func (c *Client) nextURL(next string) (*url.URL, error) {
	u, err := c.base.Parse(next)
	if err != nil {
		return nil, errors.New("twilio: invalid next_page_url") // the URL may hold identities
	}
	if !sameOrigin(u, c.base) {
		return nil, fmt.Errorf("twilio: next_page_url on %s://%s: %w", u.Scheme, u.Host, ErrForeignHost)
	}
	return u, nil
}

// list starts a paginated list of Objects.
func (c *Client) list(ctx context.Context, key string, pageSize int, extra url.Values, segs ...string) iter.Seq2[Object, error] {
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	q.Set("PageSize", strconv.Itoa(pageSize))
	u, err := c.endpoint(q, segs...)
	if err != nil {
		return errSeq(err)
	}
	return paginate[Object](ctx, c, u, key)
}

// errSeq yields a single error.
func errSeq(err error) iter.Seq2[Object, error] {
	return func(yield func(Object, error) bool) { yield(nil, err) }
}

// Services lists the Conversations services of the account (GET /v1/Services).
func (c *Client) Services(ctx context.Context) iter.Seq2[Object, error] {
	return c.list(ctx, "services", pageSizeServices, nil, "v1", "Services")
}

// Users lists the users of a service (GET /v1/Services/{IS}/Users).
func (c *Client) Users(ctx context.Context, serviceSID string) iter.Seq2[Object, error] {
	return c.list(ctx, "users", pageSizeUsers, nil, "v1", "Services", serviceSID, "Users")
}

// UserConversations lists the conversations of a user, given by SID or
// identity (GET /v1/Services/{IS}/Users/{US}/Conversations).
func (c *Client) UserConversations(ctx context.Context, serviceSID, userSID string) iter.Seq2[Object, error] {
	return c.list(ctx, "conversations", pageSizeUserConversations, nil,
		"v1", "Services", serviceSID, "Users", userSID, "Conversations")
}

// Conversations lists the conversations of a service
// (GET /v1/Services/{IS}/Conversations).
func (c *Client) Conversations(ctx context.Context, serviceSID string) iter.Seq2[Object, error] {
	return c.list(ctx, "conversations", pageSizeConversations, nil, "v1", "Services", serviceSID, "Conversations")
}

// Participants lists the participants of a conversation
// (GET /v1/Services/{IS}/Conversations/{CH}/Participants).
func (c *Client) Participants(ctx context.Context, serviceSID, conversationSID string) iter.Seq2[Object, error] {
	return c.list(ctx, "participants", pageSizeParticipants, nil,
		"v1", "Services", serviceSID, "Conversations", conversationSID, "Participants")
}

// Subject is who to look up in ParticipantConversations: exactly one of
// Identity (a chat identity) or Address (e.g. "+15551234567" or
// "whatsapp:+15551234567").
type Subject struct {
	Identity string
	Address  string
}

// ParticipantConversations lists the conversations a participant takes part
// in (GET /v1/Services/{IS}/ParticipantConversations?Identity=|Address=).
func (c *Client) ParticipantConversations(ctx context.Context, serviceSID string, s Subject) iter.Seq2[Object, error] {
	q := url.Values{}
	switch {
	case s.Identity != "" && s.Address != "":
		return errSeq(errors.New("extract: Subject: set only one of Identity and Address"))
	case s.Identity != "":
		q.Set("Identity", s.Identity)
	case s.Address != "":
		q.Set("Address", s.Address)
	default:
		return errSeq(errors.New("extract: Subject: set one of Identity and Address"))
	}
	return c.list(ctx, "conversations", pageSizeParticipantConversations, q,
		"v1", "Services", serviceSID, "ParticipantConversations")
}

// Configuration fetches the account's Conversations configuration
// (GET /v1/Configuration).
func (c *Client) Configuration(ctx context.Context) (Object, error) {
	u, err := c.endpoint(nil, "v1", "Configuration")
	if err != nil {
		return nil, err
	}
	var obj Object
	err = c.get(ctx, u, func(b []byte) error {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		obj = nil
		if err := dec.Decode(&obj); err != nil {
			return err
		}
		if dec.More() {
			return errors.New("trailing data after JSON object")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return obj, nil
}
