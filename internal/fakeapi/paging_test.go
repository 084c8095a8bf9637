package fakeapi

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestPagingYieldsEveryRowOnce(t *testing.T) {
	s := startServer(t, Options{})
	c := newClient(t, s)
	ds := s.Dataset()
	base := s.URL()
	svc := ds.Services()[1].SID
	def := ds.DefaultServiceSID()
	busy := ds.Users(svc)[0]
	large := ds.Conversations(svc)[1]
	addr := ""
	for _, a := range ds.Addresses(svc) {
		if len(ds.ParticipantConversations(svc, "", a)) >= 3 {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("no address shared by 3+ conversations")
	}
	sids := func(n int, f func(i int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	users := ds.Users(svc)
	convs := ds.Conversations(svc)
	ucs := ds.UserConversations(svc, busy.SID)
	parts := ds.Participants(svc, large.SID)
	pcsID := ds.ParticipantConversations(svc, busy.Identity, "")
	pcsAddr := ds.ParticipantConversations(svc, "", addr)
	defConvs := ds.Conversations(def)
	var closed, dated []string
	for _, cv := range convs {
		if cv.State == StateClosed {
			closed = append(closed, cv.SID)
		}
	}
	from, to := convs[20].DateCreated, convs[90].DateCreated
	for _, cv := range convs {
		if !cv.DateCreated.Before(from) && !cv.DateCreated.After(to) {
			dated = append(dated, cv.SID)
		}
	}
	slices.Reverse(dated) // date-filtered lists are newest first

	lists := []struct {
		name, url, key, sidField string
		max                      int
		want                     []string
	}{
		{"services", base + "/v1/Services", "services", "sid", 100, sids(len(ds.Services()), func(i int) string { return ds.Services()[i].SID })},
		{"users", base + "/v1/Services/" + svc + "/Users", "users", "sid", 50, sids(len(users), func(i int) string { return users[i].SID })},
		{"default users", base + "/v1/Users", "users", "sid", 50, sids(len(ds.Users(def)), func(i int) string { return ds.Users(def)[i].SID })},
		{"user conversations", base + "/v1/Services/" + svc + "/Users/" + busy.SID + "/Conversations", "conversations", "conversation_sid", 50, sids(len(ucs), func(i int) string { return ucs[i].ConversationSID })},
		{"user conversations by identity", base + "/v1/Services/" + svc + "/Users/" + url.PathEscape(busy.Identity) + "/Conversations", "conversations", "conversation_sid", 50, sids(len(ucs), func(i int) string { return ucs[i].ConversationSID })},
		{"conversations", base + "/v1/Services/" + svc + "/Conversations", "conversations", "sid", 100, sids(len(convs), func(i int) string { return convs[i].SID })},
		{"default conversations", base + "/v1/Conversations", "conversations", "sid", 100, sids(len(defConvs), func(i int) string { return defConvs[i].SID })},
		{"conversations State=closed", base + "/v1/Services/" + svc + "/Conversations?State=closed", "conversations", "sid", 100, closed},
		{"conversations by date", base + "/v1/Services/" + svc + "/Conversations?StartDate=" + q(fmtTime(from)) + "&EndDate=" + q(fmtTime(to)), "conversations", "sid", 100, dated},
		{"participants", base + "/v1/Services/" + svc + "/Conversations/" + large.SID + "/Participants", "participants", "sid", 100, sids(len(parts), func(i int) string { return parts[i].SID })},
		{"participant conversations by identity", base + "/v1/Services/" + svc + "/ParticipantConversations?Identity=" + q(busy.Identity), "conversations", "participant_sid", 50, sids(len(pcsID), func(i int) string { return pcsID[i].ParticipantSID })},
		{"participant conversations by address", base + "/v1/Services/" + svc + "/ParticipantConversations?Address=" + q(addr), "conversations", "participant_sid", 50, sids(len(pcsAddr), func(i int) string { return pcsAddr[i].ParticipantSID })},
	}
	for _, l := range lists {
		if len(l.want) == 0 {
			t.Fatalf("%s: empty expectation", l.name)
		}
		for _, ps := range []string{"", "1", "7", "50", "100", "1000"} {
			if ps == "1" && len(l.want) > 150 {
				continue // keep the test fast
			}
			t.Run(fmt.Sprintf("%s/PageSize=%s", l.name, ps), func(t *testing.T) {
				u := l.url
				wantSize := 50
				if ps != "" {
					sep := "?"
					if strings.Contains(u, "?") {
						sep = "&"
					}
					u += sep + "PageSize=" + ps
					fmt.Sscan(ps, &wantSize)
					wantSize = min(wantSize, l.max)
				}
				var pages []map[string]any
				items := c.walk(u, l.key, func(p map[string]any) { pages = append(pages, p) })
				got := make([]string, len(items))
				for i, it := range items {
					got[i] = it[l.sidField].(string)
				}
				if !slices.Equal(got, l.want) {
					t.Fatalf("got %d rows, want %d (order or content differs)", len(got), len(l.want))
				}
				wantPages := max(1, (len(l.want)+wantSize-1)/wantSize)
				if len(pages) != wantPages {
					t.Errorf("got %d pages, want %d", len(pages), wantPages)
				}
				for i, p := range pages {
					meta := p["meta"].(map[string]any)
					if n, _ := meta["page"].(json.Number).Int64(); int(n) != i {
						t.Errorf("page %d: meta.page = %v", i, meta["page"])
					}
					if n, _ := meta["page_size"].(json.Number).Int64(); int(n) != wantSize {
						t.Errorf("page %d: meta.page_size = %v, want %d", i, meta["page_size"], wantSize)
					}
					if (i == 0) != (meta["previous_page_url"] == nil) {
						t.Errorf("page %d: previous_page_url = %v", i, meta["previous_page_url"])
					}
					if (i == len(pages)-1) != (meta["next_page_url"] == nil) {
						t.Errorf("page %d: next_page_url = %v", i, meta["next_page_url"])
					}
				}
				// previous_page_url of the second page leads back to the first.
				if len(pages) > 1 {
					prev := c.getJSON(pages[1]["meta"].(map[string]any)["previous_page_url"].(string))
					a, _ := json.Marshal(prev[l.key])
					b, _ := json.Marshal(pages[0][l.key])
					if string(a) != string(b) {
						t.Error("previous_page_url of page 1 does not return page 0")
					}
				}
			})
		}
	}
}

func TestPageURLsKeepFiltersEncoded(t *testing.T) {
	s := startServer(t, Options{})
	c := newClient(t, s)
	ds := s.Dataset()
	svc := ds.DefaultServiceSID()
	var id string
	for _, u := range ds.Users(svc) {
		if strings.Contains(u.Identity, "+") && len(ds.UserConversations(svc, u.SID)) >= 2 {
			id = u.Identity
			break
		}
	}
	if id == "" {
		t.Fatal("no identity with '+' in 2+ conversations")
	}
	page := c.getJSON(s.URL() + "/v1/ParticipantConversations?Identity=" + q(id) + "&PageSize=1")
	meta := page["meta"].(map[string]any)
	next := meta["next_page_url"].(string)
	want := "Identity=" + strings.ReplaceAll(url.QueryEscape(id), "+", "%20")
	for _, k := range []string{"url", "first_page_url", "next_page_url"} {
		if !strings.Contains(meta[k].(string), want) {
			t.Errorf("meta.%s = %s, want it to contain %s", k, meta[k], want)
		}
	}
	if !strings.Contains(next, "%2B") || !strings.Contains(next, "PageToken=") || !strings.Contains(next, "Page=1") {
		t.Errorf("next_page_url %s lacks %%2B, Page=1 or PageToken", next)
	}
	pu, _ := url.Parse(next)
	if got := pu.Query().Get("Identity"); got != id {
		t.Errorf("next_page_url Identity decodes to %q, want %q", got, id)
	}
}

func TestPagingErrors(t *testing.T) {
	s := startServer(t, Options{})
	c := newClient(t, s)
	for _, tc := range []struct {
		query string
		code  int
	}{
		{"PageSize=0", 400}, {"PageSize=-3", 400}, {"PageSize=abc", 400}, {"PageSize=", 400},
		{"Page=-1", 400}, {"Page=x", 400}, {"PageToken=%21%21garbage", 400}, {"PageToken=" + encodeToken("XX", "CH1"), 400},
		{"PageSize=1000", 200}, {"PageSize=1", 200},
	} {
		t.Run(tc.query, func(t *testing.T) {
			status, h, body, err := c.get(s.URL() + "/v1/Conversations?" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.code {
				t.Fatalf("status %d, want %d: %s", status, tc.code, body)
			}
			if status == 400 {
				m := decode(t, body)
				if m["code"] != json.Number("20001") || m["status"] != json.Number("400") || h.Get("Content-Type") != "application/json" {
					t.Errorf("bad error: %v %v", h.Get("Content-Type"), m)
				}
			}
		})
	}
}
