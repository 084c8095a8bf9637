package fakeapi

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Epoch is the fixed instant from which every generated date is derived. The
// dataset never consults the wall clock, so the same configuration always
// yields byte-identical API responses.
var Epoch = time.Date(2019, 12, 16, 22, 18, 37, 0, time.UTC)

// Conversation states, as enumerated by the spec (conversation_enum_state).
const (
	StateInitializing = "initializing"
	StateInactive     = "inactive"
	StateActive       = "active"
	StateClosed       = "closed"
)

// Notification levels of a user conversation (user_conversation_enum_notification_level).
const (
	NotificationDefault = "default"
	NotificationMuted   = "muted"
)

// DatasetConfig holds the size knobs of a generated dataset. Every field has a
// usable zero value (see DefaultConfig for what zero means).
type DatasetConfig struct {
	// Seed drives every random choice (SIDs, identities, sizes, nulls).
	Seed int64
	// Services is the number of Conversation Services, including the
	// account's default one (the first service). Zero means 3.
	Services int
	// UsersPerService is the number of users in each service. Zero means 60.
	UsersPerService int
	// ConversationsPerService is the number of conversations in each service.
	// Zero means 130.
	ConversationsPerService int
	// ParticipantsPerConversation is the mean number of participants of an
	// ordinary conversation (actual counts vary from 1 to 2*mean-1).
	// Zero means 4.
	ParticipantsPerConversation int
	// LargeConversationParticipants is the participant count of the second
	// conversation of every service (the "large" one). Zero means 230.
	LargeConversationParticipants int
	// BusyUserConversations is the number of conversations the first user of
	// every service belongs to. It is clamped to the number of conversations
	// that are not in the initializing state. Zero means 120.
	BusyUserConversations int
}

// DefaultConfig is small and fast but still multi-page on every list endpoint
// at the default page size: 3 services, 60 users and 130 conversations per
// service, a 230-participant conversation and a user in 120 conversations.
func DefaultConfig() DatasetConfig {
	return DatasetConfig{
		Seed:                          1,
		Services:                      3,
		UsersPerService:               60,
		ConversationsPerService:       130,
		ParticipantsPerConversation:   4,
		LargeConversationParticipants: 230,
		BusyUserConversations:         120,
	}
}

// DemoConfig is the dataset behind `convsync export --demo`: several
// services, thousands of participants, every binding type.
func DemoConfig() DatasetConfig {
	return DatasetConfig{
		Seed:                          2024,
		Services:                      5,
		UsersPerService:               400,
		ConversationsPerService:       800,
		ParticipantsPerConversation:   6,
		LargeConversationParticipants: 450,
		BusyUserConversations:         300,
	}
}

func (c DatasetConfig) withDefaults() DatasetConfig {
	d := DefaultConfig()
	if c.Services <= 0 {
		c.Services = d.Services
	}
	if c.UsersPerService <= 0 {
		c.UsersPerService = d.UsersPerService
	}
	if c.ConversationsPerService <= 0 {
		c.ConversationsPerService = d.ConversationsPerService
	}
	if c.ParticipantsPerConversation <= 0 {
		c.ParticipantsPerConversation = d.ParticipantsPerConversation
	}
	if c.LargeConversationParticipants <= 0 {
		c.LargeConversationParticipants = d.LargeConversationParticipants
	}
	if c.BusyUserConversations <= 0 {
		c.BusyUserConversations = d.BusyUserConversations
	}
	return c
}

// Configuration is the account-level Conversations configuration
// (schema conversations.v1.configuration).
type Configuration struct {
	DefaultChatServiceSID      string
	DefaultMessagingServiceSID string
	DefaultInactiveTimer       *string // ISO8601 duration or nil
	DefaultClosedTimer         *string // ISO8601 duration or nil
}

// Service is a Conversation Service (schema conversations.v1.service).
type Service struct {
	SID          string
	FriendlyName string
	DateCreated  time.Time
	DateUpdated  time.Time
}

// User is a Conversation User (schemas conversations.v1.service.service_user
// and conversations.v1.user). Nil pointers render as JSON null.
type User struct {
	SID            string
	ChatServiceSID string
	RoleSID        *string
	Identity       string
	FriendlyName   *string
	Attributes     string
	IsOnline       *bool
	IsNotifiable   *bool
	DateCreated    time.Time
	DateUpdated    time.Time
}

// Timers holds a conversation's timers object. A nil map renders as JSON
// null, an empty map as {}; keys are "date_inactive" and/or "date_closed" and
// a nil value renders as null.
type Timers map[string]*time.Time

// Conversation is a conversation (schemas conversations.v1.service.service_conversation
// and conversations.v1.conversation).
type Conversation struct {
	SID                 string
	ChatServiceSID      string
	MessagingServiceSID *string
	FriendlyName        *string
	UniqueName          *string
	Attributes          string
	State               string
	DateCreated         time.Time
	DateUpdated         time.Time
	Timers              Timers
	// Bindings is the raw "bindings" object; nil renders as JSON null.
	Bindings json.RawMessage
	// CreatedBy is only exposed through user and participant conversations.
	CreatedBy *string
	// MessagesCount is the number of messages (not exposed directly; it
	// drives unread_messages_count).
	MessagesCount int
}

// MessagingBinding is a participant's messaging_binding object. Participant
// resources render Type plus the non-nil fields (and "address": null for a
// projected group-MMS participant); participant conversations render all six
// keys, nil as null.
type MessagingBinding struct {
	Type             string // "sms" or "whatsapp"
	Address          *string
	ProxyAddress     *string
	ProjectedAddress *string
	Name             *string
	Level            *string
}

// Participant is a conversation participant (schemas
// conversations.v1.service.service_conversation.service_conversation_participant
// and conversations.v1.conversation.conversation_participant).
type Participant struct {
	SID              string
	ConversationSID  string
	ChatServiceSID   string
	Identity         *string
	Attributes       string
	MessagingBinding *MessagingBinding
	RoleSID          *string
	DateCreated      time.Time
	DateUpdated      time.Time
	// LastReadMessageIndex and LastReadTimestamp are nil when the participant
	// has not read anything. LastReadTimestamp renders with milliseconds.
	LastReadMessageIndex *int
	LastReadTimestamp    *time.Time
	// UserSID is the SID of the user whose identity this is (nil for
	// non-chat participants). Not part of the participant JSON.
	UserSID *string
	// NotificationLevel and UnreadMessagesCount surface only through the
	// user's user conversations.
	NotificationLevel   string
	UnreadMessagesCount *int
}

// UserConversation is one conversation of a user (schemas
// conversations.v1.service.service_user.service_user_conversation and
// conversations.v1.user.user_conversation). Its conversation fields mirror
// the conversation; the rest comes from the user's participant.
type UserConversation struct {
	ChatServiceSID       string
	ConversationSID      string
	ParticipantSID       string
	UserSID              string
	UnreadMessagesCount  *int
	LastReadMessageIndex *int
	FriendlyName         *string
	UniqueName           *string
	ConversationState    string
	Timers               Timers
	Attributes           string
	DateCreated          time.Time
	DateUpdated          time.Time
	CreatedBy            *string
	NotificationLevel    string
}

// ParticipantConversation is one (participant, conversation) pair returned by
// the ParticipantConversations endpoints (schemas
// conversations.v1.service.service_participant_conversation and
// conversations.v1.participant_conversation).
type ParticipantConversation struct {
	ChatServiceSID              string
	ParticipantSID              string
	ParticipantUserSID          *string
	ParticipantIdentity         *string
	ParticipantMessagingBinding *MessagingBinding
	ConversationSID             string
	ConversationUniqueName      *string
	ConversationFriendlyName    *string
	ConversationAttributes      string
	ConversationDateCreated     time.Time
	ConversationDateUpdated     time.Time
	ConversationCreatedBy       *string
	ConversationState           string
	ConversationTimers          Timers
}

type serviceData struct {
	svc           Service
	users         []User
	userBySID     map[string]int
	userByID      map[string]int
	convs         []Conversation
	convBySID     map[string]int
	convByUnique  map[string]int
	parts         map[string][]Participant // by conversation SID
	userConvs     map[string][]UserConversation
	pcByIdentity  map[string][]ParticipantConversation
	pcByAddress   map[string][]ParticipantConversation
	participantsN int
}

// Dataset is an immutable, deterministic Twilio Conversations account. All
// accessors return copies that callers may modify freely; unknown SIDs yield
// nil slices.
type Dataset struct {
	cfg        DatasetConfig
	accountSID string
	config     Configuration
	services   []*serviceData
	bySID      map[string]*serviceData
}

// NewDataset generates the dataset described by cfg (zero fields take the
// DefaultConfig values, except Seed). It panics with cfg.Validate()'s
// one-line *SizeError for sizes that would exhaust memory (see
// MaxDatasetSize, MaxDatasetRows); call Validate first, or Start with
// Options.Config, to get an error instead.
func NewDataset(cfg DatasetConfig) *Dataset {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	g := &gen{rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15)), cfg: cfg}
	d := &Dataset{cfg: cfg, bySID: map[string]*serviceData{}}
	d.accountSID = g.sid("AC")
	for i := 0; i < cfg.Services; i++ {
		s := g.service(i)
		d.services = append(d.services, s)
		d.bySID[s.svc.SID] = s
	}
	d.config = Configuration{
		DefaultChatServiceSID:      d.services[0].svc.SID,
		DefaultMessagingServiceSID: g.sid("MG"),
		DefaultInactiveTimer:       ptr("PT1M"),
		DefaultClosedTimer:         ptr("PT10M"),
	}
	return d
}

// Config returns the configuration the dataset was generated from (with
// defaults applied).
func (d *Dataset) Config() DatasetConfig { return d.cfg }

// AccountSID returns the account SID (AC...) owning every resource.
func (d *Dataset) AccountSID() string { return d.accountSID }

// DefaultServiceSID returns the SID of the account's default Conversation
// Service, the one served by the /v1/Users, /v1/Conversations and
// /v1/ParticipantConversations routes.
func (d *Dataset) DefaultServiceSID() string { return d.config.DefaultChatServiceSID }

// Configuration returns the account-level configuration.
func (d *Dataset) Configuration() Configuration { return d.config }

// Services returns every service in list order (the default one first).
func (d *Dataset) Services() []Service {
	out := make([]Service, len(d.services))
	for i, s := range d.services {
		out[i] = s.svc
	}
	return out
}

// Users returns a service's users in list order.
func (d *Dataset) Users(serviceSID string) []User {
	if s := d.bySID[serviceSID]; s != nil {
		return slices.Clone(s.users)
	}
	return nil
}

// User looks a user up by SID or identity.
func (d *Dataset) User(serviceSID, sidOrIdentity string) (User, bool) {
	s := d.bySID[serviceSID]
	if s == nil {
		return User{}, false
	}
	if i, ok := s.userBySID[sidOrIdentity]; ok {
		return s.users[i], true
	}
	if i, ok := s.userByID[sidOrIdentity]; ok {
		return s.users[i], true
	}
	return User{}, false
}

// UserConversations returns the conversations of a user (by SID or
// identity): one per conversation having a participant with the user's
// identity, in conversation list order.
func (d *Dataset) UserConversations(serviceSID, userSID string) []UserConversation {
	u, ok := d.User(serviceSID, userSID)
	if !ok {
		return nil
	}
	return slices.Clone(d.bySID[serviceSID].userConvs[u.SID])
}

// Conversations returns a service's conversations in list order (ascending
// date_created).
func (d *Dataset) Conversations(serviceSID string) []Conversation {
	if s := d.bySID[serviceSID]; s != nil {
		return slices.Clone(s.convs)
	}
	return nil
}

// Conversation looks a conversation up by SID or unique name.
func (d *Dataset) Conversation(serviceSID, sidOrUniqueName string) (Conversation, bool) {
	s := d.bySID[serviceSID]
	if s == nil {
		return Conversation{}, false
	}
	if i, ok := s.convBySID[sidOrUniqueName]; ok {
		return s.convs[i], true
	}
	if i, ok := s.convByUnique[sidOrUniqueName]; ok {
		return s.convs[i], true
	}
	return Conversation{}, false
}

// Participants returns a conversation's participants in list order.
func (d *Dataset) Participants(serviceSID, conversationSID string) []Participant {
	c, ok := d.Conversation(serviceSID, conversationSID)
	if !ok {
		return nil
	}
	return slices.Clone(d.bySID[serviceSID].parts[c.SID])
}

// ParticipantCount returns the total number of participants in a service.
func (d *Dataset) ParticipantCount(serviceSID string) int {
	if s := d.bySID[serviceSID]; s != nil {
		return s.participantsN
	}
	return 0
}

// ParticipantConversations returns what the ParticipantConversations
// endpoints list for the given filters: participants whose identity equals
// identity (if non-empty) and whose messaging_binding.address equals address
// (if non-empty), in conversation list order. Both empty yields nil.
func (d *Dataset) ParticipantConversations(serviceSID, identity, address string) []ParticipantConversation {
	s := d.bySID[serviceSID]
	if s == nil || (identity == "" && address == "") {
		return nil
	}
	var src []ParticipantConversation
	if identity != "" {
		src = s.pcByIdentity[identity]
	} else {
		src = s.pcByAddress[address]
	}
	var out []ParticipantConversation
	for _, pc := range src {
		if identity != "" && (pc.ParticipantIdentity == nil || *pc.ParticipantIdentity != identity) {
			continue
		}
		if address != "" && (pc.ParticipantMessagingBinding == nil || pc.ParticipantMessagingBinding.Address == nil || *pc.ParticipantMessagingBinding.Address != address) {
			continue
		}
		out = append(out, pc)
	}
	return out
}

// Addresses returns every distinct messaging_binding.address used in a
// service, sorted.
func (d *Dataset) Addresses(serviceSID string) []string {
	s := d.bySID[serviceSID]
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.pcByAddress))
	for a := range s.pcByAddress {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

func (d *Dataset) service(sid string) *serviceData { return d.bySID[sid] }

// ---- generation ----

type gen struct {
	rng *rand.Rand
	cfg DatasetConfig
}

func ptr[T any](v T) *T { return &v }

func (g *gen) sid(prefix string) string {
	return fmt.Sprintf("%s%016x%016x", prefix, g.rng.Uint64(), g.rng.Uint64())
}

func (g *gen) chance(p float64) bool { return g.rng.Float64() < p }

func (g *gen) dur(maxSeconds int) time.Duration {
	return time.Duration(g.rng.IntN(maxSeconds)+1) * time.Second
}

// specialIdentities exercise escaping and unicode handling.
var specialIdentities = []string{
	"Zoë Ångström",
	"李雷",
	"john.doe.42",
	"jane+support@example.com",
	"ops/night shift",
	"100% legit",
	"first last",
	"+15551230000",
	"émile.dupré@exämple.fr",
	"agent.007",
	"x%2Fy literal",
	"O'Brien & Sons",
	"韩梅梅/客服",
	"a.b.c.1.2.3",
	"trailing.dot.",
	"emoji 🙂 user",
	"  leading and trailing  ",
	"Ivan Иванов",
}

var firstNames = []string{"ana", "bob", "chen", "dmitri", "eve", "fatima", "goro", "hana", "ines", "jonas", "kofi", "lena", "mateo", "noor", "olga", "pablo"}

func (g *gen) identity(svc, i int) string {
	if i < len(specialIdentities) {
		return specialIdentities[i]
	}
	n := firstNames[i%len(firstNames)]
	switch i % 5 {
	case 0:
		return fmt.Sprintf("%s.%d", n, i)
	case 1:
		return fmt.Sprintf("%s.%d@example.com", n, i)
	case 2:
		return fmt.Sprintf("agent%04d", i)
	case 3:
		return fmt.Sprintf("%s %d", strings.ToUpper(n[:1])+n[1:], i)
	default:
		return fmt.Sprintf("svc%d/%s+%d", svc, n, i)
	}
}

func (g *gen) attributes(large bool) string {
	if large {
		var b strings.Builder
		b.WriteString(`{"notes":"`)
		for b.Len() < 16*1024-200 {
			fmt.Fprintf(&b, "line %d: lorem ipsum dolor sit amet, Zoë naïve café \\\"quoted\\\" \\u00e9 ", g.rng.IntN(1000))
		}
		b.WriteString(`","tags":["big","attrs"],"n":16384}`)
		return b.String()
	}
	switch g.rng.IntN(6) {
	case 0, 1:
		return "{}"
	case 2:
		return `{ "duty": "agent" }`
	case 3:
		return fmt.Sprintf(`{"crm_id":%d,"vip":%t,"tags":["a","b"]}`, g.rng.IntN(1_000_000), g.chance(0.3))
	case 4:
		return `{"nested":{"name":"Zoë","city":"Malmö","list":[1,2,{"k":null}]}}`
	default:
		return fmt.Sprintf(`{"topic":"order #%d","priority":%d}`, g.rng.IntN(100000), g.rng.IntN(5))
	}
}

func (g *gen) service(idx int) *serviceData {
	cfg := g.cfg
	created := Epoch.Add(time.Duration(idx) * 24 * time.Hour)
	names := []string{"Default Conversations Service", "Support", "Sales – EMEA", "Drivers & Dispatch", "客服中心", "Clinic"}
	name := names[idx%len(names)]
	if idx >= len(names) {
		name = fmt.Sprintf("%s %d", name, idx)
	}
	s := &serviceData{
		svc: Service{
			SID: g.sid("IS"), FriendlyName: name,
			DateCreated: created, DateUpdated: created.Add(g.dur(86400)),
		},
		userBySID: map[string]int{}, userByID: map[string]int{},
		convBySID: map[string]int{}, convByUnique: map[string]int{},
		parts: map[string][]Participant{}, userConvs: map[string][]UserConversation{},
		pcByIdentity: map[string][]ParticipantConversation{}, pcByAddress: map[string][]ParticipantConversation{},
	}
	svcRole := g.sid("RL")
	convRole := g.sid("RL")
	msgSvc := g.sid("MG")

	// Users.
	t := created.Add(time.Hour)
	for i := 0; i < cfg.UsersPerService; i++ {
		t = t.Add(g.dur(3 * 3600))
		u := User{
			SID: g.sid("US"), ChatServiceSID: s.svc.SID,
			Identity: g.identity(idx, i), Attributes: g.attributes(i == 5),
			DateCreated: t, DateUpdated: t,
		}
		if !g.chance(0.15) {
			u.RoleSID = ptr(svcRole)
		}
		if !g.chance(0.2) {
			u.FriendlyName = ptr(strings.TrimSpace(u.Identity) + " (display)")
		}
		switch g.rng.IntN(3) {
		case 0:
			u.IsOnline = ptr(true)
		case 1:
			u.IsOnline = ptr(false)
		}
		if g.chance(0.5) {
			u.IsNotifiable = ptr(g.chance(0.5))
		}
		if g.chance(0.4) {
			u.DateUpdated = t.Add(g.dur(30 * 86400))
		}
		s.userBySID[u.SID] = i
		s.userByID[u.Identity] = i
		s.users = append(s.users, u)
	}

	// Address pools: SMS numbers recur across conversations so that the
	// Address filter of ParticipantConversations returns several rows.
	smsPool := max(40, cfg.UsersPerService)
	smsAddr := func(k int) string { return fmt.Sprintf("+1555%d%06d", idx%10, k) }
	waAddr := func(k int) string { return fmt.Sprintf("whatsapp:+44770090%04d", idx*1000+k) }
	proxies := []string{fmt.Sprintf("+1201555%04d", idx*10+1), fmt.Sprintf("+1201555%04d", idx*10+2)}
	waProxy := fmt.Sprintf("whatsapp:+1415555%04d", idx)

	// Conversations.
	busyLeft := cfg.BusyUserConversations
	states := []string{StateActive, StateActive, StateActive, StateInactive, StateClosed}
	t = created.Add(2 * time.Hour)
	for i := 0; i < cfg.ConversationsPerService; i++ {
		t = t.Add(g.dur(6 * 3600))
		c := Conversation{
			SID: g.sid("CH"), ChatServiceSID: s.svc.SID, MessagingServiceSID: ptr(msgSvc),
			Attributes: g.attributes(i == 3), DateCreated: t, DateUpdated: t,
			MessagesCount: g.rng.IntN(400),
		}
		if i%29 == 7 {
			c.State = StateInitializing
		} else {
			c.State = states[g.rng.IntN(len(states))]
		}
		if i%7 != 3 {
			c.FriendlyName = ptr(fmt.Sprintf("Conversation %d · %s", i, firstNames[i%len(firstNames)]))
		}
		if i%3 == 0 {
			c.UniqueName = ptr(fmt.Sprintf("conv-%d-%d", idx, i))
			if i%9 == 0 {
				*c.UniqueName += "/ünï+que"
			}
		}
		if g.chance(0.7) {
			c.DateUpdated = t.Add(g.dur(20 * 86400))
		}
		switch g.rng.IntN(4) {
		case 0:
			c.CreatedBy = nil
		case 1:
			c.CreatedBy = ptr("system")
		default:
			c.CreatedBy = ptr(s.users[g.rng.IntN(len(s.users))].Identity)
		}
		if g.chance(0.85) {
			c.Bindings = json.RawMessage(`{}`)
		}
		inactive := c.DateUpdated.Add(g.dur(86400))
		closed := inactive.Add(g.dur(10 * 86400))
		switch c.State {
		case StateInitializing:
			c.Timers = Timers{}
			c.MessagingServiceSID = nil
			c.MessagesCount = 0
		case StateActive:
			switch g.rng.IntN(4) {
			case 0:
				c.Timers = nil
			case 1:
				c.Timers = Timers{}
			case 2:
				c.Timers = Timers{"date_inactive": &inactive}
			default:
				c.Timers = Timers{"date_inactive": &inactive, "date_closed": &closed}
			}
		case StateInactive:
			if g.chance(0.5) {
				c.Timers = Timers{"date_inactive": &inactive, "date_closed": nil}
			} else {
				c.Timers = Timers{"date_inactive": &inactive, "date_closed": &closed}
			}
		case StateClosed:
			if g.chance(0.3) {
				c.Timers = nil
			} else {
				c.Timers = Timers{"date_inactive": &inactive, "date_closed": &closed}
			}
		}
		s.convBySID[c.SID] = i
		if c.UniqueName != nil {
			s.convByUnique[*c.UniqueName] = i
		}
		s.convs = append(s.convs, c)

		if c.State == StateInitializing {
			s.parts[c.SID] = []Participant{}
			continue
		}

		// Participants.
		groupMMS := i%13 == 5
		n := 1 + g.rng.IntN(2*cfg.ParticipantsPerConversation-1)
		if i == 1 {
			n = cfg.LargeConversationParticipants
		}
		if groupMMS {
			n = min(10, 3+g.rng.IntN(6))
		}
		usedUser := map[int]bool{}
		usedAddr := map[string]bool{}
		var ps []Participant
		pt := c.DateCreated
		newPart := func() Participant {
			pt = pt.Add(g.dur(600))
			p := Participant{
				SID: g.sid("MB"), ConversationSID: c.SID, ChatServiceSID: s.svc.SID,
				Attributes: g.attributes(i == 1 && len(ps) == 17), DateCreated: pt, DateUpdated: pt,
				NotificationLevel: NotificationDefault,
			}
			if !g.chance(0.1) {
				p.RoleSID = ptr(convRole)
			}
			if g.chance(0.3) {
				p.DateUpdated = pt.Add(g.dur(86400))
			}
			if c.MessagesCount > 0 && !g.chance(0.25) {
				idx := g.rng.IntN(c.MessagesCount)
				p.LastReadMessageIndex = ptr(idx)
				ts := pt.Add(g.dur(5*86400) + time.Duration(g.rng.IntN(1000))*time.Millisecond)
				p.LastReadTimestamp = &ts
			}
			if g.chance(0.2) {
				p.NotificationLevel = NotificationMuted
			}
			return p
		}
		addUser := func(ui int, projected bool) {
			p := newPart()
			u := s.users[ui]
			usedUser[ui] = true
			p.Identity = ptr(u.Identity)
			p.UserSID = ptr(u.SID)
			switch {
			case p.LastReadMessageIndex != nil:
				p.UnreadMessagesCount = ptr(c.MessagesCount - 1 - *p.LastReadMessageIndex)
			case g.chance(0.5):
				p.UnreadMessagesCount = ptr(c.MessagesCount)
			}
			if projected {
				p.MessagingBinding = &MessagingBinding{
					Type: "sms", ProjectedAddress: ptr(proxies[0]),
					Name: u.FriendlyName, Level: ptr("participant"),
				}
			}
			ps = append(ps, p)
		}
		pickUser := func() int {
			for try := 0; try < 6; try++ {
				ui := g.rng.IntN(len(s.users))
				if !usedUser[ui] {
					return ui
				}
			}
			for ui := range s.users {
				if !usedUser[ui] && len(usedUser) < len(s.users)/2 {
					return ui
				}
			}
			return -1
		}
		addAddr := func(kind string) {
			var a string
			for try := 0; ; try++ {
				k := g.rng.IntN(smsPool)
				if try > 4 {
					k = smsPool + len(ps) + i*1000 // unique overflow number
				}
				if kind == "whatsapp" {
					a = waAddr(k)
				} else {
					a = smsAddr(k)
				}
				if !usedAddr[a] {
					break
				}
			}
			usedAddr[a] = true
			p := newPart()
			switch kind {
			case "whatsapp":
				p.MessagingBinding = &MessagingBinding{Type: "whatsapp", Address: ptr(a), ProxyAddress: ptr(waProxy)}
			case "mms":
				p.MessagingBinding = &MessagingBinding{Type: "sms", Address: ptr(a)}
			default:
				p.MessagingBinding = &MessagingBinding{Type: "sms", Address: ptr(a), ProxyAddress: ptr(proxies[g.rng.IntN(len(proxies))])}
			}
			ps = append(ps, p)
		}
		if busyLeft > 0 {
			busyLeft--
			addUser(0, groupMMS)
		} else if groupMMS {
			if ui := pickUser(); ui >= 0 {
				addUser(ui, true)
			}
		}
		for len(ps) < n {
			if groupMMS {
				addAddr("mms")
				continue
			}
			r := g.rng.IntN(100)
			switch {
			case r < 50:
				if ui := pickUser(); ui >= 0 {
					addUser(ui, false)
				} else {
					addAddr("sms")
				}
			case r < 72:
				addAddr("sms")
			case r < 90:
				addAddr("whatsapp")
			default:
				p := newPart() // attributes-only participant
				if p.Attributes == "{}" {
					p.Attributes = `{"source":"import","external_id":"` + p.SID[2:10] + `"}`
				}
				ps = append(ps, p)
			}
		}
		s.parts[c.SID] = ps
		s.participantsN += len(ps)
		for _, p := range ps {
			pc := ParticipantConversation{
				ChatServiceSID: s.svc.SID, ParticipantSID: p.SID, ParticipantUserSID: p.UserSID,
				ParticipantIdentity: p.Identity, ParticipantMessagingBinding: p.MessagingBinding,
				ConversationSID: c.SID, ConversationUniqueName: c.UniqueName, ConversationFriendlyName: c.FriendlyName,
				ConversationAttributes: c.Attributes, ConversationDateCreated: c.DateCreated,
				ConversationDateUpdated: c.DateUpdated, ConversationCreatedBy: c.CreatedBy,
				ConversationState: c.State, ConversationTimers: c.Timers,
			}
			if p.Identity != nil {
				s.pcByIdentity[*p.Identity] = append(s.pcByIdentity[*p.Identity], pc)
				s.userConvs[*p.UserSID] = append(s.userConvs[*p.UserSID], UserConversation{
					ChatServiceSID: s.svc.SID, ConversationSID: c.SID, ParticipantSID: p.SID, UserSID: *p.UserSID,
					UnreadMessagesCount: p.UnreadMessagesCount, LastReadMessageIndex: p.LastReadMessageIndex,
					FriendlyName: c.FriendlyName, UniqueName: c.UniqueName, ConversationState: c.State,
					Timers: c.Timers, Attributes: c.Attributes, DateCreated: c.DateCreated, DateUpdated: c.DateUpdated,
					CreatedBy: c.CreatedBy, NotificationLevel: p.NotificationLevel,
				})
			}
			if b := p.MessagingBinding; b != nil && b.Address != nil {
				s.pcByAddress[*b.Address] = append(s.pcByAddress[*b.Address], pc)
			}
		}
	}
	return s
}
