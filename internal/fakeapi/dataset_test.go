package fakeapi

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDatasetDeterministic(t *testing.T) {
	render := func(d *Dataset) string {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.Encode(d.JSON("http://x", d.Configuration()))
		for _, s := range d.Services() {
			enc.Encode(d.JSON("http://x", s))
			for _, u := range d.Users(s.SID) {
				enc.Encode(d.JSON("http://x", u))
				for _, uc := range d.UserConversations(s.SID, u.SID) {
					enc.Encode(d.JSON("http://x", uc))
				}
			}
			for _, c := range d.Conversations(s.SID) {
				enc.Encode(d.JSON("http://x", c))
				for _, p := range d.Participants(s.SID, c.SID) {
					enc.Encode(d.DefaultRouteJSON("http://x", p))
				}
			}
		}
		return b.String()
	}
	a, b := render(NewDataset(DefaultConfig())), render(NewDataset(DefaultConfig()))
	if a != b {
		t.Fatal("same config produced different datasets")
	}
	other := DefaultConfig()
	other.Seed = 99
	if NewDataset(other).AccountSID() == NewDataset(DefaultConfig()).AccountSID() {
		t.Error("different seeds produced the same account SID")
	}
}

func TestDatasetShape(t *testing.T) {
	sidRE := regexp.MustCompile(`^[A-Z]{2}[0-9a-f]{32}$`)
	for _, tc := range []struct {
		name string
		cfg  DatasetConfig
	}{
		{"default", DefaultConfig()},
		{"demo", DemoConfig()},
		{"zero config", DatasetConfig{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			d := NewDataset(tc.cfg)
			gen := time.Since(start)
			cfg := d.Config()
			t.Logf("generated in %v", gen)
			if tc.name == "demo" && gen > 3*time.Second {
				t.Errorf("demo generation took %v", gen)
			}
			if d.Configuration().DefaultChatServiceSID != d.Services()[0].SID || d.DefaultServiceSID() != d.Services()[0].SID {
				t.Error("default service is not the first service")
			}
			seen := map[string]bool{}
			sid := func(s, prefix string) {
				if !sidRE.MatchString(s) || !strings.HasPrefix(s, prefix) || seen[s] {
					t.Fatalf("bad or duplicate SID %q (want prefix %s)", s, prefix)
				}
				seen[s] = true
			}
			sid(d.AccountSID(), "AC")
			totalParts := 0
			for _, s := range d.Services() {
				sid(s.SID, "IS")
				users := d.Users(s.SID)
				convs := d.Conversations(s.SID)
				if len(users) != cfg.UsersPerService || len(users) <= 50 || len(convs) <= 100 {
					t.Errorf("service %s: %d users, %d conversations", s.SID, len(users), len(convs))
				}
				identities := map[string]bool{}
				for _, u := range users {
					sid(u.SID, "US")
					if identities[u.Identity] {
						t.Errorf("duplicate identity %q", u.Identity)
					}
					identities[u.Identity] = true
				}
				active := 0
				for _, c := range convs {
					if c.State != StateInitializing {
						active++
					}
				}
				if n := len(d.UserConversations(s.SID, users[0].SID)); n <= 50 || n < min(cfg.BusyUserConversations, active) {
					t.Errorf("busy user in %d conversations", n)
				}
				maxParts := 0
				ucCount := map[string]int{}
				for i, c := range convs {
					sid(c.SID, "CH")
					if i > 0 && c.DateCreated.Before(convs[i-1].DateCreated) {
						t.Error("conversations not in date_created order")
					}
					ps := d.Participants(s.SID, c.SID)
					maxParts = max(maxParts, len(ps))
					totalParts += len(ps)
					if c.State == StateInitializing && len(ps) != 0 {
						t.Errorf("initializing conversation %s has participants", c.SID)
					}
					ids, addrs := map[string]bool{}, map[string]bool{}
					for _, p := range ps {
						sid(p.SID, "MB")
						if p.ConversationSID != c.SID || p.ChatServiceSID != s.SID {
							t.Fatal("participant parent mismatch")
						}
						if p.Identity != nil {
							if ids[*p.Identity] {
								t.Errorf("identity %q twice in %s", *p.Identity, c.SID)
							}
							ids[*p.Identity] = true
							u, ok := d.User(s.SID, *p.Identity)
							if !ok || p.UserSID == nil || *p.UserSID != u.SID {
								t.Fatalf("participant identity %q has no user", *p.Identity)
							}
							ucCount[u.SID]++
						}
						if b := p.MessagingBinding; b != nil && b.Address != nil {
							if addrs[*b.Address] {
								t.Errorf("address %q twice in %s", *b.Address, c.SID)
							}
							addrs[*b.Address] = true
						}
						if p.LastReadTimestamp != nil && p.LastReadTimestamp.Before(p.DateCreated) {
							t.Error("read before joining")
						}
					}
				}
				if maxParts <= 100 {
					t.Errorf("largest conversation has %d participants", maxParts)
				}
				// User conversations mirror the conversations and participants.
				for _, u := range users {
					ucs := d.UserConversations(s.SID, u.SID)
					if len(ucs) != ucCount[u.SID] {
						t.Fatalf("user %q: %d user conversations, %d participations", u.Identity, len(ucs), ucCount[u.SID])
					}
					for _, uc := range ucs {
						c, _ := d.Conversation(s.SID, uc.ConversationSID)
						if uc.ConversationState != c.State || !reflect.DeepEqual(uc.Timers, c.Timers) || uc.Attributes != c.Attributes ||
							!reflect.DeepEqual(uc.FriendlyName, c.FriendlyName) || !reflect.DeepEqual(uc.UniqueName, c.UniqueName) ||
							!uc.DateCreated.Equal(c.DateCreated) || !reflect.DeepEqual(uc.CreatedBy, c.CreatedBy) {
							t.Fatalf("user conversation %s does not mirror its conversation", uc.ConversationSID)
						}
						var part *Participant
						for _, p := range d.Participants(s.SID, c.SID) {
							if p.SID == uc.ParticipantSID {
								part = &p
							}
						}
						if part == nil || part.Identity == nil || *part.Identity != u.Identity ||
							!reflect.DeepEqual(part.LastReadMessageIndex, uc.LastReadMessageIndex) || part.NotificationLevel != uc.NotificationLevel {
							t.Fatalf("user conversation %s does not match its participant", uc.ConversationSID)
						}
					}
					if pcs := d.ParticipantConversations(s.SID, u.Identity, ""); len(pcs) != len(ucs) {
						t.Fatalf("user %q: %d participant conversations, %d user conversations", u.Identity, len(pcs), len(ucs))
					}
				}
			}
			if tc.name == "demo" && totalParts < 2000 {
				t.Errorf("demo has only %d participants", totalParts)
			}
			t.Logf("%d services, %d participants", len(d.Services()), totalParts)
		})
	}
}

// TestJSONMatchesAPI checks that Dataset.JSON/DefaultRouteJSON render exactly
// what the server returns, so other packages can compute expectations.
func TestJSONMatchesAPI(t *testing.T) {
	s := startServer(t, Options{})
	c := newClient(t, s)
	ds := s.Dataset()
	base := s.URL()
	def := ds.DefaultServiceSID()
	cv := ds.Conversations(def)[1]
	u := ds.Users(def)[0]
	pc := ds.ParticipantConversations(def, u.Identity, "")[0]
	for _, tc := range []struct {
		name, url, key string
		want           map[string]any
	}{
		{"configuration", "/v1/Configuration", "", ds.JSON(base, ds.Configuration())},
		{"service", "/v1/Services", "services", ds.JSON(base, ds.Services()[0])},
		{"user", "/v1/Services/" + def + "/Users", "users", ds.JSON(base, u)},
		{"default user", "/v1/Users", "users", ds.DefaultRouteJSON(base, u)},
		{"user conversation", "/v1/Services/" + def + "/Users/" + u.SID + "/Conversations", "conversations", ds.JSON(base, ds.UserConversations(def, u.SID)[0])},
		{"default user conversation", "/v1/Users/" + u.SID + "/Conversations", "conversations", ds.DefaultRouteJSON(base, ds.UserConversations(def, u.SID)[0])},
		{"conversation", "/v1/Services/" + def + "/Conversations", "conversations", ds.JSON(base, ds.Conversations(def)[0])},
		{"default conversation", "/v1/Conversations", "conversations", ds.DefaultRouteJSON(base, ds.Conversations(def)[0])},
		{"participant", "/v1/Services/" + def + "/Conversations/" + cv.SID + "/Participants", "participants", ds.JSON(base, ds.Participants(def, cv.SID)[0])},
		{"default participant", "/v1/Conversations/" + cv.SID + "/Participants", "participants", ds.DefaultRouteJSON(base, ds.Participants(def, cv.SID)[0])},
		{"participant conversation", "/v1/Services/" + def + "/ParticipantConversations?Identity=" + q(u.Identity), "conversations", ds.JSON(base, pc)},
		{"default participant conversation", "/v1/ParticipantConversations?Identity=" + q(u.Identity), "conversations", ds.DefaultRouteJSON(base, &pc)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := c.getJSON(base + tc.url)
			if tc.key != "" {
				got = got[tc.key].([]any)[0].(map[string]any)
			}
			if want := roundTrip(t, tc.want); !reflect.DeepEqual(got, want) {
				t.Errorf("API:\n%v\nJSON():\n%v", got, want)
			}
		})
	}
	if _, ok := ds.JSON(base, ds.Participants(def, cv.SID)[0])["chat_service_sid"]; !ok {
		t.Error("service participant lacks chat_service_sid")
	}
	if _, ok := ds.DefaultRouteJSON(base, ds.Participants(def, cv.SID)[0])["chat_service_sid"]; ok {
		t.Error("default-route participant has chat_service_sid")
	}
}

// TestValidatorCatchesViolations guards the spec test against vacuity.
func TestValidatorCatchesViolations(t *testing.T) {
	spec := loadSpec(t)
	ds := testDataset()
	base := "http://127.0.0.1:1"
	schemas := spec["components"].(map[string]any)["schemas"].(map[string]any)
	schema := schemas["conversations.v1.service.service_user.service_user_conversation"].(map[string]any)
	good := roundTrip(t, ds.JSON(base, ds.UserConversations(ds.DefaultServiceSID(), ds.Users(ds.DefaultServiceSID())[0].SID)[0]))
	for _, tc := range []struct {
		name   string
		mutate func(m map[string]any)
	}{
		{"none", func(m map[string]any) {}},
		{"extra field", func(m map[string]any) { m["extra"] = "x" }},
		{"missing field", func(m map[string]any) { delete(m, "links") }},
		{"bad enum", func(m map[string]any) { m["conversation_state"] = "initializing" }},
		{"null enum", func(m map[string]any) { m["notification_level"] = nil }},
		{"bad sid", func(m map[string]any) { m["user_sid"] = "US123" }},
		{"bad type", func(m map[string]any) { m["unread_messages_count"] = "3" }},
		{"bad date", func(m map[string]any) { m["date_created"] = "2019-12-16 22:18:37" }},
		{"relative url", func(m map[string]any) { m["url"] = "/v1/Users" }},
		{"bad timers", func(m map[string]any) { m["timers"] = map[string]any{"date_closed": "soon"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := roundTrip(t, good)
			tc.mutate(m)
			v := &schemaValidator{spec: spec, base: base, regexps: map[string]*regexp.Regexp{}}
			v.check("obj", schema, m)
			if (len(v.errs) == 0) != (tc.name == "none") {
				t.Errorf("errors: %v", v.errs)
			}
		})
	}
}
