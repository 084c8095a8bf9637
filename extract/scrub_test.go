package extract

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Secrets whose Basic auth pairs encode differently in each base64
// alphabet ("+" and "/" against "-" and "_", and padding).
const (
	awkwardToken  = "tok3n~s3cret>>??value"
	awkwardSecret = "s3cr>t?~API~secret"
)

// echoSecrets is what a hostile or careless server says back: the
// Authorization header it got, and the secret it decodes from it in every
// form a log or error could carry.
func echoSecrets(r *http.Request, c Credentials) string {
	auth := r.Header.Get("Authorization")
	var parts []string
	parts = append(parts, "Authorization: "+auth)
	if raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic ")); err == nil {
		user, secret, _ := strings.Cut(string(raw), ":")
		parts = append(parts, secretForms(user, secret)...)
	}
	// Every secret the client has, whichever authenticated this request.
	for _, s := range []string{c.AuthToken, c.APISecret} {
		if s != "" {
			parts = append(parts, s, url.QueryEscape(s))
		}
	}
	return strings.Join(parts, " | ")
}

// TestSecretForms checks the helper and Credentials.Secrets agree on every
// form, and that the forms really differ (else the test below proves less).
func TestSecretForms(t *testing.T) {
	c := Credentials{AccountSID: testSID, AuthToken: awkwardToken, APIKey: testKey, APISecret: awkwardSecret}
	secrets := c.Secrets()
	for _, pair := range [][2]string{{testSID, awkwardToken}, {testKey, awkwardSecret}} {
		forms := secretForms(pair[0], pair[1])
		distinct := map[string]bool{}
		for _, f := range forms {
			distinct[f] = true
			covered := false
			for _, s := range secrets {
				covered = covered || strings.Contains(f, s)
			}
			if !covered {
				t.Errorf("form %q is not covered by Secrets()", f)
			}
		}
		if len(distinct) < 12 {
			t.Errorf("only %d distinct forms of %s's secret: the alphabets do not differ", len(distinct), pair[0])
		}
	}
}

// TestNoCredentialsEchoed: a server that echoes the Authorization header
// and the raw secret wherever it can put text leaves no trace of either
// secret, in any form, in errors or logs.
func TestNoCredentialsEchoed(t *testing.T) {
	type mode struct {
		name string
		h    func(w http.ResponseWriter, r *http.Request, c Credentials)
		bug  string // a known bug this mode finds (see knownBug)
	}
	const bugDescribe = "describe() quotes server text in UntrustedError reasons unscrubbed"
	modes := []mode{
		{"401 message", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			writeJSON(w, 401, twilioError(401, 20003, "Authenticate "+echoSecrets(r, c)))
		}, ""},
		{"503 message, retried and logged", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			writeJSON(w, 503, twilioError(503, 20503, "busy "+echoSecrets(r, c)))
		}, ""},
		{"429 more_info", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			writeJSON(w, 429, fmt.Appendf(nil, `{"code": 14107, "message": "slow down", "more_info": %q, "status": 429}`, "https://x/"+echoSecrets(r, c)))
		}, ""},
		{"400 message cut at 300 characters", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			writeJSON(w, 400, twilioError(400, 20001, strings.Repeat("x", 290)+echoSecrets(r, c)))
		}, ""},
		{"404 HTML", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			w.WriteHeader(404)
			_, _ = w.Write([]byte("<html>" + echoSecrets(r, c) + "</html>"))
		}, ""},
		{"200 not JSON", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			writeJSON(w, 200, []byte("{"+echoSecrets(r, c)))
		}, ""},
		// Short server strings are quoted in the reasons of untrustworthy
		// answers: the secret the request authenticated with, and the other.
		{"200 meta.key", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			_, used, _ := r.BasicAuth()
			writeJSON(w, 200, fmt.Appendf(nil, `{"meta": {"key": %q}, "conversations": []}`, used))
		}, bugDescribe},
		{"200 meta.key, the other secret", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			_, used, _ := r.BasicAuth()
			other := c.AuthToken
			if other == used {
				other = c.APISecret
			}
			writeJSON(w, 200, fmt.Appendf(nil, `{"meta": {"key": %q}, "conversations": []}`, other))
		}, bugDescribe},
		{"200 string member", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			_, used, _ := r.BasicAuth()
			writeJSON(w, 200, fmt.Appendf(nil, `{"meta": {"key": "conversations"}, "conversations": [%q]}`, used))
		}, bugDescribe},
		{"200 next_page_url on a host named after the header", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(r.Header.Get("Authorization"), "Basic "))
			host := base64.RawURLEncoding.EncodeToString(raw) + ".evil.example"
			writeJSON(w, 200, listBody("conversations", []M{{"sid": "x"}}, "https://"+host+"/v1/x?u="+url.QueryEscape(string(raw))))
		}, "nextURL's ErrForeignHost error prints the server's host unscrubbed"},
		{"302 to a host named after the header", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(r.Header.Get("Authorization"), "Basic "))
			host := base64.RawURLEncoding.EncodeToString(raw) + ".evil.example"
			http.Redirect(w, r, "https://"+host+"/v1/x", http.StatusFound)
		}, ""},
		{"200 string member, the header", func(w http.ResponseWriter, r *http.Request, c Credentials) {
			writeJSON(w, 200, fmt.Appendf(nil, `{"meta": {"key": "conversations"}, "conversations": [%q]}`, r.Header.Get("Authorization")))
		}, ""},
	}
	creds := []struct {
		name       string
		c          Credentials
		user, pass string
	}{
		{"auth token", Credentials{AccountSID: testSID, AuthToken: awkwardToken}, testSID, awkwardToken},
		{"API key", Credentials{AccountSID: testSID, APIKey: testKey, APISecret: awkwardSecret}, testKey, awkwardSecret},
		{"both", Credentials{AccountSID: testSID, AuthToken: awkwardToken, APIKey: testKey, APISecret: awkwardSecret}, testKey, awkwardSecret},
	}
	for _, cr := range creds {
		for _, m := range modes {
			t.Run(cr.name+"/"+m.name, func(t *testing.T) {
				e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
					if u, p, ok := r.BasicAuth(); !ok || u != cr.user || p != cr.pass {
						t.Errorf("basic auth = %q, %q", u, p)
					}
					m.h(w, r, cr.c)
				}, func(c *Config) { c.Credentials, c.MaxRetries = cr.c, 1 })
				_, err := collect(e.c.UserConversations(context.Background(), testIS, testUS))
				if err == nil {
					t.Fatal("no error")
				}
				outs := []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)}
				var ae *APIError
				if errors.As(err, &ae) {
					outs = append(outs, ae.Message, ae.MoreInfo)
				}
				var ue *UntrustedError
				if errors.As(err, &ue) {
					outs = append(outs, ue.Reason)
				}
				logs := e.log.String()
				if !strings.Contains(logs, `"level":"debug"`) {
					t.Errorf("no debug logs captured")
				}
				var forms []string
				if cr.c.AuthToken != "" {
					forms = append(forms, secretForms(testSID, awkwardToken)...)
				}
				if cr.c.APISecret != "" {
					forms = append(forms, secretForms(testKey, awkwardSecret)...)
				}
				var leaks []string
				for _, f := range forms {
					for i, out := range append(outs, logs) {
						if strings.Contains(out, f) {
							leaks = append(leaks, fmt.Sprintf("%q in output %d", f, i))
						}
					}
				}
				if len(leaks) > 0 {
					if m.bug != "" {
						fixedBug(t, m.bug, "%d leaks, e.g. %s: %v", len(leaks), leaks[0], err)
					}
					t.Errorf("secrets revealed: %s\nerror: %v\nlogs: %s", strings.Join(leaks, "; "), err, logs)
				}
			})
		}
	}
}

// TestPageTokensNotLogged: page tokens are the server's choice and may be
// anything: their values appear neither in logs nor in errors, while the
// other paging parameters do.
func TestPageTokensNotLogged(t *testing.T) {
	const token = "PTs3cr3t/identity=jane.doe@example.com"
	var self string
	e := newEnv(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("Page") {
		case "":
			writeJSON(w, 200, listBody("services", []M{{"sid": "a"}}, self+"/v1/Services?PageSize=100&Page=1&PageToken="+url.QueryEscape(token)))
		case "1":
			if r.URL.Query().Get("PageToken") != token {
				t.Errorf("PageToken = %q", r.URL.Query().Get("PageToken"))
			}
			writeJSON(w, 503, twilioError(503, 20503, "unavailable: "+r.URL.String()))
		}
	}, func(c *Config) { c.MaxRetries = 2 })
	self = e.srv.URL
	_, err := collect(e.c.Services(context.Background()))
	if err == nil {
		t.Fatal("no error")
	}
	logs := e.log.String()
	for _, out := range []string{logs, err.Error()} {
		for _, v := range []string{token, url.QueryEscape(token), url.PathEscape(token), "PTs3cr3t", "jane.doe"} {
			if strings.Contains(out, v) {
				t.Errorf("page token %q revealed in %s", v, out)
			}
		}
	}
	if !strings.Contains(logs, `/v1/Services?Page=1&PageSize=100&PageToken=REDACTED`) {
		t.Errorf("logs do not show the page asked for, token redacted: %s", logs)
	}
	if !strings.Contains(logs, `"level":"warn"`) {
		t.Errorf("no retry warning logged: %s", logs)
	}
}
