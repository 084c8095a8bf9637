package fakeapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAuth(t *testing.T) {
	s := startServer(t, Options{})
	cr := s.Credentials()
	u := s.URL() + "/v1/Services"
	for _, tc := range []struct {
		name, user, pass string
		want             int
	}{
		{"account sid + token", cr.AccountSID, cr.AuthToken, 200},
		{"api key + secret", cr.APIKeySID, cr.APIKeySecret, 200},
		{"wrong token", cr.AccountSID, strings.Repeat("0", 32), 401},
		{"unknown key", "SK" + strings.Repeat("a", 32), cr.APIKeySecret, 401},
		{"key with account token", cr.APIKeySID, cr.AuthToken, 401},
		{"account with key secret", cr.AccountSID, cr.APIKeySecret, 401},
		{"missing header", "", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &apiClient{t: t, hc: &http.Client{}, user: tc.user, pass: tc.pass}
			for _, path := range []string{u, s.URL() + "/v1/NoSuchThing"} {
				status, h, body, err := c.get(path)
				if err != nil {
					t.Fatal(err)
				}
				want := tc.want
				if want == 200 && strings.HasSuffix(path, "NoSuchThing") {
					want = 404
				}
				if status != want {
					t.Fatalf("%s: status %d, want %d", path, status, want)
				}
				if status == 401 {
					wantErr(t, h, body, 401, 20003, "Authenticate")
				}
			}
		})
	}
	if !strings.HasPrefix(cr.AccountSID, "AC") || len(cr.AccountSID) != 34 || !strings.HasPrefix(cr.APIKeySID, "SK") || len(cr.APIKeySID) != 34 {
		t.Errorf("default credentials malformed: %+v", cr)
	}
	if cr != New(Options{Dataset: testDataset()}).Credentials() {
		t.Error("default credentials are not deterministic")
	}
}

// wantErr checks a Twilio error body.
func wantErr(t *testing.T, h http.Header, body []byte, status, code int, msg string) {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var e struct {
		Code     int    `json:"code"`
		Message  string `json:"message"`
		MoreInfo string `json:"more_info"`
		Status   int    `json:"status"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	var raw map[string]any
	json.Unmarshal(body, &raw)
	if len(raw) != 4 || e.Code != code || e.Status != status || !strings.Contains(e.Message, msg) ||
		e.MoreInfo != "https://www.twilio.com/docs/errors/"+itoa(code) {
		t.Errorf("error body %s, want code %d status %d message ~%q", body, code, status, msg)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestNotFoundAndMethods(t *testing.T) {
	s := startServer(t, Options{})
	c := newClient(t, s)
	ds := s.Dataset()
	svc := ds.DefaultServiceSID()
	base := s.URL()
	unknownIS := "IS" + strings.Repeat("0", 32)
	for _, tc := range []struct{ name, path string }{
		{"unknown top-level", "/v1/Nope"},
		{"unknown version", "/v2/Services"},
		{"root", "/"},
		{"unknown service users", "/v1/Services/" + unknownIS + "/Users"},
		{"unknown service conversations", "/v1/Services/" + unknownIS + "/Conversations"},
		{"unknown service participant conversations", "/v1/Services/" + unknownIS + "/ParticipantConversations?Identity=x"},
		{"unknown user", "/v1/Services/" + svc + "/Users/US" + strings.Repeat("0", 32) + "/Conversations"},
		{"unknown identity", "/v1/Users/nobody%2Fhere/Conversations"},
		{"unknown conversation", "/v1/Conversations/CH" + strings.Repeat("0", 32) + "/Participants"},
		{"service instance (not served)", "/v1/Services/" + svc},
		{"trailing slash", "/v1/Services/"},
		{"empty segment", "/v1/Users//Conversations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body, err := c.get(base + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if status != 404 {
				t.Fatalf("status %d, want 404: %s", status, body)
			}
			wantErr(t, h, body, 404, 20404, "The requested resource /")
		})
	}
	t.Run("identity with slash resolves", func(t *testing.T) {
		for _, u := range ds.Users(svc) {
			if !strings.Contains(u.Identity, "/") {
				continue
			}
			page := c.getJSON(base + "/v1/Users/" + escapePath(u.Identity) + "/Conversations")
			if got, want := len(page["conversations"].([]any)), min(50, len(ds.UserConversations(svc, u.SID))); got != want {
				t.Errorf("%q: %d rows, want %d", u.Identity, got, want)
			}
		}
	})
	t.Run("conversation by unique name", func(t *testing.T) {
		for _, cv := range ds.Conversations(svc) {
			if cv.UniqueName == nil || cv.State == StateInitializing {
				continue
			}
			page := c.getJSON(base + "/v1/Conversations/" + escapePath(*cv.UniqueName) + "/Participants")
			if len(page["participants"].([]any)) == 0 {
				t.Errorf("%q: no participants", *cv.UniqueName)
			}
		}
	})
	for _, m := range []string{http.MethodPost, http.MethodDelete, http.MethodPut, http.MethodPatch} {
		t.Run("method "+m, func(t *testing.T) {
			req, _ := http.NewRequest(m, base+"/v1/Services/"+svc+"/Users", strings.NewReader("Identity=x"))
			req.SetBasicAuth(s.Credentials().AccountSID, s.Credentials().AuthToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 405 {
				t.Fatalf("status %d, want 405", resp.StatusCode)
			}
			wantErr(t, resp.Header, body, 405, 20004, "Method not allowed")
		})
	}
	t.Run("ParticipantConversations needs a filter", func(t *testing.T) {
		status, h, body, _ := c.get(base + "/v1/ParticipantConversations")
		if status != 400 {
			t.Fatalf("status %d", status)
		}
		wantErr(t, h, body, 400, 20001, "Identity or Address")
	})
}

// TestHTTPTestServer mounts the handler in httptest: URLs follow the Host.
func TestHTTPTestServer(t *testing.T) {
	s := New(Options{Dataset: testDataset()})
	ts := httptest.NewServer(s)
	defer ts.Close()
	if s.URL() != "" || s.Close() != nil {
		t.Error("New: URL should be empty and Close a no-op")
	}
	c := &apiClient{t: t, hc: ts.Client(), user: s.Credentials().APIKeySID, pass: s.Credentials().APIKeySecret}
	page := c.getJSON(ts.URL + "/v1/Services?PageSize=1")
	meta := page["meta"].(map[string]any)
	if !strings.HasPrefix(meta["next_page_url"].(string), ts.URL+"/v1/Services?") {
		t.Errorf("next_page_url %v not on %s", meta["next_page_url"], ts.URL)
	}
	svc := page["services"].([]any)[0].(map[string]any)
	if svc["url"] != ts.URL+"/v1/Services/"+testDataset().DefaultServiceSID() {
		t.Errorf("service url %v", svc["url"])
	}
	if got := s.Counters().ByEndpoint[EndpointServices]; got != 1 {
		t.Errorf("services counter %d", got)
	}
}
