package fakeapi

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/twilio/twilio-go"
	twclient "github.com/twilio/twilio-go/client"
	conversations "github.com/twilio/twilio-go/rest/conversations/v1"
)

// rewriteTransport sends every request (the SDK targets
// https://conversations.twilio.com) to the simulator instead.
type rewriteTransport struct{ target *url.URL }

func (rt rewriteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = rt.target.Scheme, rt.target.Host, rt.target.Host
	return http.DefaultTransport.RoundTrip(r)
}

func sdkClient(t *testing.T, s *Server, user, pass string) *conversations.ApiService {
	target, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := &twclient.Client{
		Credentials: twclient.NewCredentials(user, pass),
		HTTPClient:  &http.Client{Transport: rewriteTransport{target}},
	}
	c.SetAccountSid(s.Credentials().AccountSID)
	return twilio.NewRestClientWithParams(twilio.ClientParams{Client: c}).ConversationsV1
}

func TestOfficialSDK(t *testing.T) {
	s := startServer(t, Options{})
	ds := s.Dataset()
	cr := s.Credentials()
	for _, auth := range []struct{ name, user, pass string }{
		{"account", cr.AccountSID, cr.AuthToken},
		{"api-key", cr.APIKeySID, cr.APIKeySecret},
	} {
		t.Run(auth.name, func(t *testing.T) {
			api := sdkClient(t, s, auth.user, auth.pass)
			svcs, err := api.ListService((&conversations.ListServiceParams{}).SetPageSize(1))
			if err != nil {
				t.Fatal(err)
			}
			if len(svcs) != len(ds.Services()) {
				t.Fatalf("services: %d, want %d", len(svcs), len(ds.Services()))
			}
			if auth.name == "api-key" {
				svcs = svcs[:1] // one service is enough to prove API-key auth
			}
			for _, svc := range svcs {
				sid := *svc.Sid
				users, err := api.ListServiceUser(sid, (&conversations.ListServiceUserParams{}).SetPageSize(7))
				if err != nil {
					t.Fatal(err)
				}
				if len(users) != len(ds.Users(sid)) {
					t.Fatalf("users: %d, want %d", len(users), len(ds.Users(sid)))
				}
				for _, u := range users {
					ucs, err := api.ListServiceUserConversation(sid, *u.Sid, (&conversations.ListServiceUserConversationParams{}).SetPageSize(50))
					if err != nil {
						t.Fatalf("user %s: %v", *u.Identity, err)
					}
					want := ds.UserConversations(sid, *u.Sid)
					if len(ucs) != len(want) {
						t.Fatalf("user %q: %d conversations, want %d", *u.Identity, len(ucs), len(want))
					}
					for i, uc := range ucs {
						if *uc.ConversationSid != want[i].ConversationSID || *uc.ParticipantSid != want[i].ParticipantSID || uc.DateCreated == nil {
							t.Fatalf("user %q row %d mismatch", *u.Identity, i)
						}
					}
				}
				convs, err := api.ListServiceConversation(sid, (&conversations.ListServiceConversationParams{}).SetPageSize(13))
				if err != nil {
					t.Fatal(err)
				}
				if len(convs) != len(ds.Conversations(sid)) {
					t.Fatalf("conversations: %d, want %d", len(convs), len(ds.Conversations(sid)))
				}
				total := 0
				for _, cv := range convs {
					ps, err := api.ListServiceConversationParticipant(sid, *cv.Sid, (&conversations.ListServiceConversationParticipantParams{}).SetPageSize(100))
					if err != nil {
						t.Fatalf("conversation %s: %v", *cv.Sid, err)
					}
					want := ds.Participants(sid, *cv.Sid)
					if len(ps) != len(want) {
						t.Fatalf("conversation %s: %d participants, want %d", *cv.Sid, len(ps), len(want))
					}
					for i, p := range ps {
						if *p.Sid != want[i].SID || (p.MessagingBinding != nil) != (want[i].MessagingBinding != nil) {
							t.Fatalf("participant %d of %s mismatch", i, *cv.Sid)
						}
					}
					total += len(ps)
				}
				if total != ds.ParticipantCount(sid) {
					t.Fatalf("participants: %d, want %d", total, ds.ParticipantCount(sid))
				}
				busy := ds.Users(sid)[0]
				pcs, err := api.ListServiceParticipantConversation(sid, (&conversations.ListServiceParticipantConversationParams{}).SetIdentity(busy.Identity).SetPageSize(9))
				if err != nil {
					t.Fatal(err)
				}
				if len(pcs) != len(ds.ParticipantConversations(sid, busy.Identity, "")) {
					t.Fatalf("participant conversations of %q: %d", busy.Identity, len(pcs))
				}
			}
		})
	}
	t.Run("default routes", func(t *testing.T) {
		api := sdkClient(t, s, cr.AccountSID, cr.AuthToken)
		def := ds.DefaultServiceSID()
		users, err := api.ListUser((&conversations.ListUserParams{}).SetPageSize(11))
		if err != nil || len(users) != len(ds.Users(def)) {
			t.Fatalf("users: %d, %v", len(users), err)
		}
		ucs, err := api.ListUserConversation(*users[0].Sid, (&conversations.ListUserConversationParams{}).SetPageSize(50))
		if err != nil || len(ucs) != len(ds.UserConversations(def, *users[0].Sid)) {
			t.Fatalf("user conversations: %d, %v", len(ucs), err)
		}
		convs, err := api.ListConversation((&conversations.ListConversationParams{}).SetPageSize(100))
		if err != nil || len(convs) != len(ds.Conversations(def)) {
			t.Fatalf("conversations: %d, %v", len(convs), err)
		}
		ps, err := api.ListConversationParticipant(*convs[1].Sid, (&conversations.ListConversationParticipantParams{}).SetPageSize(100))
		if err != nil || len(ps) != len(ds.Participants(def, *convs[1].Sid)) {
			t.Fatalf("participants: %d, %v", len(ps), err)
		}
		addr := ds.Addresses(def)[0]
		pcs, err := api.ListParticipantConversation((&conversations.ListParticipantConversationParams{}).SetAddress(addr).SetPageSize(50))
		if err != nil || len(pcs) != len(ds.ParticipantConversations(def, "", addr)) {
			t.Fatalf("participant conversations by address: %d, %v", len(pcs), err)
		}
	})
	t.Run("bad credentials surface as a Twilio error", func(t *testing.T) {
		api := sdkClient(t, s, cr.AccountSID, "wrong")
		_, err := api.ListService(nil)
		te, ok := err.(*twclient.TwilioRestError)
		if !ok || te.Code != 20003 || te.Status != 401 {
			t.Fatalf("err = %#v", err)
		}
	})
}
