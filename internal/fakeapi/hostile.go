package fakeapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Hostile configures answers a client must not trust: each mode, off by
// default, makes the simulator misbehave in one way, so that tests can
// check that a client fails (rather than silently shortening its export)
// on an answer it cannot trust. Everything else in a hostile answer stays
// as the spec has it, and every choice is a pure function of Faults.Seed
// and the request.
type Hostile struct {
	// Endpoint selects the endpoint (an Endpoint* constant) the modes apply
	// to. "" means every list endpoint for the list modes, the two child
	// lists (EndpointUserConversations, EndpointParticipants) for HTML404
	// and TooLongList, and every endpoint for EchoAuthorization and
	// HugeRetryAfter.
	Endpoint string

	// WrongMetaKey: list pages whose meta.key names another list, with an
	// empty array under that key and none under the right one
	// (participants ↔ conversations, users ↔ services).
	WrongMetaKey bool
	// NullMember: one member of the list array of every non-empty page is
	// JSON null.
	NullMember bool
	// MissingKey: one object of every non-empty page lacks its key field
	// (KeyField: sid; conversation_sid for user conversations;
	// participant_sid for participant conversations).
	MissingKey bool
	// NumericKey: one object of every non-empty page has its key field as
	// a JSON number instead of a string.
	NumericKey bool
	// HTML404: the child lists (user conversations, participants) answer
	// 404 with a text/html body, a proxy's error page rather than Twilio's
	// error JSON.
	HTML404 bool
	// EndlessList makes the selected lists never end: every page carries a
	// next_page_url with a new, never repeating PageToken. EndlessRepeat
	// serves the first page's rows on every page; EndlessFresh serves the
	// real rows and then synthetic rows with fresh SIDs, new ones on every
	// page. Rows are generated per request: the server stores nothing per
	// page. "" is off.
	EndlessList EndlessMode
	// TokenCycle: the last page's next_page_url points back to the page
	// before it (the URL that page reported as meta.url), so that
	// following next_page_url cycles; a single-page list's only page
	// points to itself.
	TokenCycle bool
	// Oversized pads every page of the selected lists to this many bytes
	// (if it is not larger already): the attributes of the page's first
	// object become {"pad":"xxx…"} (friendly_name for services,
	// conversation_attributes for participant conversations), or, on an
	// empty page, trailing whitespace follows the JSON. The padding is
	// streamed, never held in memory. Zero is off.
	Oversized int64
	// EchoAuthorization: Twilio error responses echo the request's
	// Authorization header, and the Basic user, password and user:password
	// it carries, in their message, as a careless server or proxy might.
	// Combine it with a fault or request that errors (Rate500, a bad
	// PageSize, ...).
	EchoAuthorization bool
	// HugeRetryAfter: every 429 (random or MaxInFlight) carries
	// "Retry-After: 3600" (HugeRetryAfterSeconds), whatever RetryAfterRate.
	HugeRetryAfter bool
	// TooLongList lists this many rows (when more than the real ones) for
	// each service's large conversation (its second, whose participants
	// are listed) and busy user (its first, whose conversations are
	// listed): the real rows, then synthetic ones with fresh SIDs, served
	// page by page. Above 1,000 it exceeds Twilio's documented maxima of
	// participants per conversation and conversations per user. Zero is
	// off.
	TooLongList int
}

// EndlessMode is how an endless list goes on (Hostile.EndlessList).
type EndlessMode string

// Endless list modes.
const (
	// EndlessRepeat: every page repeats the first page's rows.
	EndlessRepeat EndlessMode = "repeat"
	// EndlessFresh: after the real rows, every page brings new synthetic
	// rows with fresh SIDs.
	EndlessFresh EndlessMode = "fresh"
)

// HugeRetryAfterSeconds is the Retry-After of 429s under
// Hostile.HugeRetryAfter.
const HugeRetryAfterSeconds = 3600

// HostileCounters counts the hostile answers served (Counters.Hostile):
// pages (or responses) that carried each misbehaviour.
type HostileCounters struct {
	WrongMetaKey, NullMember, MissingKey, NumericKey int64
	HTML404                                          int64
	// EndlessPages counts pages of endless lists.
	EndlessPages int64
	// TokenCycle counts pages whose next_page_url points backwards.
	TokenCycle int64
	// Oversized counts padded responses.
	Oversized int64
	// EchoAuthorization counts error responses that echoed an
	// Authorization header.
	EchoAuthorization int64
	// HugeRetryAfter counts 429s with Retry-After: 3600.
	HugeRetryAfter int64
	// TooLongPages counts pages of lists lengthened by TooLongList.
	TooLongPages int64
}

// ListEndpoints are the endpoints that answer with pages.
var ListEndpoints = []string{
	EndpointServices, EndpointUsers, EndpointUserConversations, EndpointConversations,
	EndpointParticipants, EndpointParticipantConversations,
}

func isChildList(ep string) bool {
	return ep == EndpointUserConversations || ep == EndpointParticipants
}

// KeyField returns the field that identifies a list endpoint's objects:
// "sid", or "conversation_sid" for user conversations and
// "participant_sid" for participant conversations.
func KeyField(endpoint string) string {
	switch endpoint {
	case EndpointUserConversations:
		return "conversation_sid"
	case EndpointParticipantConversations:
		return "participant_sid"
	}
	return "sid"
}

// wrongKey is the list key WrongMetaKey substitutes for key.
func wrongKey(key string) string {
	switch key {
	case "participants":
		return "conversations"
	case "conversations":
		return "participants"
	case "users":
		return "services"
	}
	return "users"
}

func (h Hostile) validate() error {
	if h.Endpoint != "" && !slices.Contains(ListEndpoints, h.Endpoint) && h.Endpoint != EndpointConfiguration {
		return fmt.Errorf("fakeapi: Hostile.Endpoint %q is not an endpoint (want one of %v, %s or empty)", h.Endpoint, ListEndpoints, EndpointConfiguration)
	}
	if (h.HTML404 || h.TooLongList > 0) && h.Endpoint != "" && !isChildList(h.Endpoint) {
		return fmt.Errorf("fakeapi: Hostile.HTML404 and TooLongList apply to %s or %s, not Hostile.Endpoint %q",
			EndpointUserConversations, EndpointParticipants, h.Endpoint)
	}
	switch h.EndlessList {
	case "", EndlessRepeat, EndlessFresh:
	default:
		return fmt.Errorf("fakeapi: Hostile.EndlessList %q is not %q, %q or empty", h.EndlessList, EndlessRepeat, EndlessFresh)
	}
	if h.Oversized < 0 || h.TooLongList < 0 {
		return fmt.Errorf("fakeapi: Hostile.Oversized and TooLongList must not be negative")
	}
	return nil
}

// list reports whether the list modes apply to endpoint.
func (h Hostile) list(ep string) bool {
	return slices.Contains(ListEndpoints, ep) && (h.Endpoint == "" || h.Endpoint == ep)
}

// child reports whether HTML404 and TooLongList apply to endpoint.
func (h Hostile) child(ep string) bool {
	return isChildList(ep) && (h.Endpoint == "" || h.Endpoint == ep)
}

// anyEndpoint reports whether EchoAuthorization and HugeRetryAfter apply
// to endpoint.
func (h Hostile) anyEndpoint(ep string) bool { return h.Endpoint == "" || h.Endpoint == ep }

// Validate reports a fault configuration New cannot serve: a negative
// OtherInFlight, or an unknown Hostile endpoint or mode.
func (f Faults) Validate() error {
	if f.OtherInFlight < 0 {
		return fmt.Errorf("fakeapi: Faults.OtherInFlight %d is negative", f.OtherInFlight)
	}
	return f.Hostile.validate()
}

// ---- synthetic rows ----

// synthSID is a deterministic SID (prefix + 32 hex digits) for synthetic
// row i of the list tagged tag.
func (s *Server) synthSID(prefix, tag string, i int) string {
	h := sha256.New()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(s.faults.Seed))
	binary.LittleEndian.PutUint64(b[8:], uint64(i))
	h.Write(b[:])
	h.Write([]byte(tag))
	return prefix + hex.EncodeToString(h.Sum(nil)[:16])
}

func synthTime(i int) time.Time { return Epoch.Add(time.Duration(i) * time.Minute) }

func synthAddress(i int) string { return fmt.Sprintf("+1555%07d", i%10_000_000) }

// ---- hostile pages ----

// pickRow chooses, deterministically, for the misbehaviour tag one member
// of items still intact (an object with its key field kf a string, so that
// combined modes never spoil each other's row), or -1.
func (s *Server) pickRow(tag, where, kf string, items []any) int {
	var cand []int
	for i, it := range items {
		if m, ok := it.(map[string]any); ok {
			if _, ok := m[kf].(string); ok {
				cand = append(cand, i)
			}
		}
	}
	if len(cand) == 0 {
		return -1
	}
	return cand[int(hashUnit(s.faults.Seed, tag, where)*float64(len(cand)))]
}

// mutate applies the page-level hostile modes to a page of endpoint.
func (s *Server) mutate(endpoint, key, where string, po *pageOut) {
	h := s.faults.Hostile
	if !h.list(endpoint) {
		return
	}
	hc := func(f func(c *HostileCounters)) { s.counters.do(func(c *Counters) { f(&c.Hostile) }) }
	if h.TokenCycle && po.last {
		po.meta["next_page_url"] = po.cycleURL
		hc(func(c *HostileCounters) { c.TokenCycle++ })
	}
	kf := KeyField(endpoint)
	if h.NullMember {
		if i := s.pickRow("null-member", where, kf, po.items); i >= 0 {
			po.items[i] = nil
			hc(func(c *HostileCounters) { c.NullMember++ })
		}
	}
	if h.MissingKey {
		if i := s.pickRow("missing-key", where, kf, po.items); i >= 0 {
			delete(po.items[i].(map[string]any), kf)
			hc(func(c *HostileCounters) { c.MissingKey++ })
		}
	}
	if h.NumericKey {
		if i := s.pickRow("numeric-key", where, kf, po.items); i >= 0 {
			po.items[i].(map[string]any)[kf] = int64(hashUnit(s.faults.Seed, "numeric-key-value", where) * 1e12)
			hc(func(c *HostileCounters) { c.NumericKey++ })
		}
	}
	if h.WrongMetaKey {
		other := wrongKey(key)
		delete(po.obj, key)
		po.obj[other] = []any{}
		po.meta["key"] = other
		hc(func(c *HostileCounters) { c.WrongMetaKey++ })
	}
}

// padMarker stands in for the padded string while the page is encoded.
const padMarker = "fakeapi-oversized-pad-9c41e7"

// padFields are the string fields Oversized pads, by endpoint.
func padField(endpoint string) string {
	switch endpoint {
	case EndpointServices:
		return "friendly_name"
	case EndpointParticipantConversations:
		return "conversation_attributes"
	}
	return "attributes"
}

// pageResp encodes a page, padded under Hostile.Oversized.
func (s *Server) pageResp(endpoint string, po pageOut) response {
	resp := jsonResp(po.obj)
	target := s.faults.Hostile.Oversized
	if target <= 0 || !s.faults.Hostile.list(endpoint) || resp.status != 200 || int64(len(resp.body)) >= target {
		return resp
	}
	s.counters.do(func(c *Counters) { c.Hostile.Oversized++ })
	field := padField(endpoint)
	var row map[string]any
	if items, ok := po.obj[po.key].([]any); ok {
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				if _, ok := m[field]; ok {
					row = m
					break
				}
			}
		}
	}
	if row == nil { // nothing to pad: trailing whitespace
		resp.padByte, resp.padN = ' ', target-int64(len(resp.body))
		return resp
	}
	// The field becomes head + filler + tail, as encoded in the JSON
	// string: {"pad":"xxx…"} for attributes, xxx… for a name.
	head, tail := `{\"pad\":\"`, `\"}`
	if field == "friendly_name" {
		head, tail = "", ""
	}
	row[field] = padMarker
	b, err := json.Marshal(po.obj)
	at := bytes.Index(b, []byte(padMarker))
	if err != nil || at < 0 {
		return errResp(500, 20500, "Internal Server Error")
	}
	n := target - int64(len(b)-len(padMarker)+len(head)+len(tail))
	return response{status: 200, header: resp.header,
		body:    append(b[:at:at], head...),
		padByte: 'x', padN: max(n, 0),
		tail: append([]byte(tail), b[at+len(padMarker):]...)}
}

// htmlNotFound is a proxy's 404 page (Hostile.HTML404).
func htmlNotFound() response {
	return response{status: 404,
		header: http.Header{"Content-Type": {"text/html; charset=utf-8"}},
		body: []byte("<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n" +
			"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")}
}

// echoAuthorization rewrites a Twilio error's message to carry the
// request's credentials (Hostile.EchoAuthorization).
func (s *Server) echoAuthorization(r *http.Request, resp response) response {
	auth := r.Header.Get("Authorization")
	if resp.code == 0 || auth == "" {
		return resp
	}
	msg := resp.msg + " (request Authorization: " + strconv.Quote(auth)
	if u, p, ok := r.BasicAuth(); ok {
		msg += fmt.Sprintf(", username %q, password %q, credentials %q", u, p, u+":"+p)
	}
	msg += ")"
	s.counters.do(func(c *Counters) { c.Hostile.EchoAuthorization++ })
	out := errResp(resp.status, resp.code, msg)
	out.header = resp.header
	return out
}
