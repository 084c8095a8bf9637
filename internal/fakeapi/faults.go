package fakeapi

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"sync"
	"time"
)

// Faults configures injected failures. Every rate is a per-request
// probability in [0,1]; zero disables that fault. Random draws come from a
// generator seeded with Seed, so a sequential client sees the same faults on
// every run. Faults apply uniformly to every endpoint, except the Hostile
// ones, which have an endpoint selector.
type Faults struct {
	// Seed seeds the per-request fault draws and the deleted-resource
	// selection.
	Seed int64
	// Latency is slept (honouring the request context) by every admitted
	// request before it is answered.
	Latency time.Duration
	// MaxInFlight caps concurrently admitted requests; requests beyond the
	// cap get 429 (code 20429). Zero means unlimited.
	MaxInFlight int
	// OtherInFlight is the load of a phantom other application of the same
	// account, permanently holding that many requests in flight: they count
	// toward MaxInFlight (a client gets only MaxInFlight-OtherInFlight
	// slots) and toward the Twilio-Concurrent-Requests header, but not
	// toward Counters.PeakInFlight.
	OtherInFlight int
	// Rate429 is the probability of a random 429 (code 20429).
	Rate429 float64
	// RetryAfterRate is the fraction of 429s (random or MaxInFlight) that
	// carry a "Retry-After: 1" header.
	RetryAfterRate float64
	// Rate500 is the probability of a 500 (code 20500).
	Rate500 float64
	// Rate503 is the probability of a 503 (code 20503).
	Rate503 float64
	// RateReset is the probability that the connection is reset (TCP RST)
	// after the headers and part of the body were sent.
	RateReset float64
	// RateTruncate is the probability that the response declares the full
	// Content-Length but only part of the body is sent before the
	// connection is closed.
	RateTruncate float64
	// DeletedConversations is the fraction of conversations that were
	// "deleted mid-crawl": they are listed, but their Participants list
	// returns 404 (code 20404). See IsConversationDeleted.
	DeletedConversations float64
	// RateRepeat is the probability that a follow-on page starts with the
	// last row of the page before, as Twilio's cursors do when data changes
	// during a walk. Clients must deduplicate by key.
	RateRepeat float64
	// DeletedServiceSIDs lists services "deleted mid-crawl": they are
	// listed in /v1/Services, but every route under them answers 404.
	DeletedServiceSIDs []string
	// DeletedUsers is the fraction of users whose Conversations list
	// returns 404 (code 20404) although they are listed. See IsUserDeleted.
	DeletedUsers float64
	// Hostile configures answers a client must not trust (see Hostile);
	// the zero value serves none.
	Hostile Hostile
}

// hashUnit maps (seed, kind, sid) to a deterministic number in [0,1).
func hashUnit(seed int64, kind, sid string) float64 {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(sid))
	sum := h.Sum(nil)
	return float64(binary.LittleEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

// IsConversationDeleted reports whether the conversation's Participants list
// answers 404 under these faults. It depends only on Seed,
// DeletedConversations and sid.
func (f Faults) IsConversationDeleted(sid string) bool {
	return f.DeletedConversations > 0 && hashUnit(f.Seed, "conversation", sid) < f.DeletedConversations
}

// IsUserDeleted reports whether the user's Conversations list answers 404
// under these faults. It depends only on Seed, DeletedUsers and sid.
func (f Faults) IsUserDeleted(sid string) bool {
	return f.DeletedUsers > 0 && hashUnit(f.Seed, "user", sid) < f.DeletedUsers
}

// Endpoint names used as keys of Counters.ByEndpoint. Service-scoped and
// default-service routes share a name.
const (
	EndpointConfiguration            = "configuration"
	EndpointServices                 = "services"
	EndpointUsers                    = "users"
	EndpointUserConversations        = "user_conversations"
	EndpointConversations            = "conversations"
	EndpointParticipants             = "participants"
	EndpointParticipantConversations = "participant_conversations"
	EndpointUnknown                  = "unknown"
)

// Counters is a snapshot of what the server did since start or the last
// ResetCounters.
type Counters struct {
	// Requests counts every request received.
	Requests int64
	// ByEndpoint counts requests per endpoint name (Endpoint* constants).
	ByEndpoint map[string]int64
	// ByStatus counts responses per HTTP status (as sent in the header,
	// including resets and truncations, which send 200 and the like).
	ByStatus map[int]int64
	// Status401, Status404, Status429 and Status5xx count responses with
	// those statuses, whatever the cause.
	Status401, Status404, Status429, Status5xx int64
	// Throttled counts 429s caused by MaxInFlight.
	Throttled int64
	// Injected429, Injected500 and Injected503 count random faults.
	Injected429, Injected500, Injected503 int64
	// RetryAfter counts 429s that carried a Retry-After header.
	RetryAfter int64
	// Resets counts connections reset mid-body.
	Resets int64
	// Truncations counts responses cut short of their Content-Length.
	Truncations int64
	// Repeats counts pages that repeated the previous page's last row.
	Repeats int64
	// DeletedConversation404 and DeletedUser404 count 404s served for
	// deleted conversations' participants and deleted users' conversations.
	DeletedConversation404, DeletedUser404 int64
	// DeletedService404 counts 404s served under deleted services.
	DeletedService404 int64
	// PeakInFlight is the highest number of concurrently admitted (real)
	// requests.
	PeakInFlight int64
	// Hostile counts hostile answers (Faults.Hostile).
	Hostile HostileCounters
	// PeakConcurrentRequests is the highest Twilio-Concurrent-Requests
	// value sent on an admitted request: PeakInFlight plus the phantom
	// Faults.OtherInFlight load.
	PeakConcurrentRequests int64
}

type counterSet struct {
	mu sync.Mutex
	c  Counters
}

func (cs *counterSet) do(f func(c *Counters)) {
	cs.mu.Lock()
	f(&cs.c)
	cs.mu.Unlock()
}

func (cs *counterSet) snapshot() Counters {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.c
	c.ByEndpoint = maps.Clone(cs.c.ByEndpoint)
	c.ByStatus = maps.Clone(cs.c.ByStatus)
	if c.ByEndpoint == nil {
		c.ByEndpoint = map[string]int64{}
	}
	if c.ByStatus == nil {
		c.ByStatus = map[int]int64{}
	}
	return c
}

func (cs *counterSet) reset() {
	cs.mu.Lock()
	cs.c = Counters{}
	cs.mu.Unlock()
}

func (cs *counterSet) status(code int) {
	cs.do(func(c *Counters) {
		if c.ByStatus == nil {
			c.ByStatus = map[int]int64{}
		}
		c.ByStatus[code]++
		switch {
		case code == 401:
			c.Status401++
		case code == 404:
			c.Status404++
		case code == 429:
			c.Status429++
		case code >= 500:
			c.Status5xx++
		}
	})
}

// DeletedConversationSIDs lists, sorted, the dataset's conversations whose
// Participants list answers 404 under the server's faults.
func (s *Server) DeletedConversationSIDs() []string {
	var out []string
	for _, svc := range s.ds.services {
		for _, c := range svc.convs {
			if s.faults.IsConversationDeleted(c.SID) {
				out = append(out, c.SID)
			}
		}
	}
	slices.Sort(out)
	return out
}

// DeletedUserSIDs lists, sorted, the dataset's users whose Conversations
// list answers 404 under the server's faults.
func (s *Server) DeletedUserSIDs() []string {
	var out []string
	for _, svc := range s.ds.services {
		for _, u := range svc.users {
			if s.faults.IsUserDeleted(u.SID) {
				out = append(out, u.SID)
			}
		}
	}
	slices.Sort(out)
	return out
}
