// Command sdkbaseline reads a whole Conversations account the way Twilio's
// official Go SDK (github.com/twilio/twilio-go) documents it: a RestClient
// from NewRestClientWithParams with the account SID and auth token, and the
// Conversations v1 List calls with PageSize at each list's maximum and no
// Limit, one list after another, page by page, with no concurrency. It only
// reads: the rows are counted and discarded. It is the baseline of the
// benchmarks in internal/bench, not a tool.
//
//	TWILIO_ACCOUNT_SID=AC... TWILIO_AUTH_TOKEN=... sdkbaseline --base-url http://127.0.0.1:8089
//
// --base-url sends the SDK's requests (addressed to
// https://conversations.twilio.com) to another API root, a simulated API
// such as `convsync fakeapi`: the SDK's documented way to change how it
// sends requests is its HTTP client, so the client's transport rewrites each
// request's scheme and host, as internal/fakeapi/sdk_test.go does. It prints
// one JSON line: the requests sent, the rows read per table, the wall time.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/twilio/twilio-go"
	twclient "github.com/twilio/twilio-go/client"
	conversations "github.com/twilio/twilio-go/rest/conversations/v1"
)

// Maximum PageSize of each list, as the SDK's parameter docs and Twilio's
// OpenAPI spec give them (the ones convsync uses too).
const (
	pageServices          = 100
	pageUsers             = 50
	pageUserConversations = 50
	pageConversations     = 100
	pageParticipants      = 100
)

// rewrite sends every request to target instead of the SDK's host, and
// counts them.
type rewrite struct {
	target *url.URL // nil: leave requests as they are
	next   http.RoundTripper
	n      atomic.Int64
}

func (rt *rewrite) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.n.Add(1)
	if rt.target != nil {
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.Host = rt.target.Scheme, rt.target.Host, rt.target.Host
	}
	return rt.next.RoundTrip(r)
}

type result struct {
	Requests  int64            `json:"requests"`
	Rows      map[string]int64 `json:"rows"`
	ElapsedMS float64          `json:"elapsed_ms"`
}

func main() {
	base := flag.String("base-url", "", "API root to send the requests to instead of https://conversations.twilio.com")
	flag.Parse()
	if err := run(*base); err != nil {
		fmt.Fprintln(os.Stderr, "sdkbaseline:", err)
		os.Exit(1)
	}
}

func run(base string) error {
	start := time.Now()
	client := twilio.NewRestClientWithParams(twilio.ClientParams{
		Username: os.Getenv("TWILIO_ACCOUNT_SID"),
		Password: os.Getenv("TWILIO_AUTH_TOKEN"),
	})
	rt := &rewrite{next: http.DefaultTransport}
	if base != "" {
		u, err := url.Parse(base)
		if err != nil || u.Host == "" {
			return fmt.Errorf("--base-url %q is not a URL", base)
		}
		rt.target = u
	}
	// The SDK's default client (10 s timeout, redirects not followed), on
	// the rewriting transport.
	client.SetTimeout(10 * time.Second)
	hc, ok := client.RequestHandler.Client.(*twclient.Client)
	if !ok || hc.HTTPClient == nil {
		return fmt.Errorf("unexpected SDK client %T", client.RequestHandler.Client)
	}
	hc.HTTPClient.Transport = rt
	api := client.ConversationsV1

	rows := map[string]int64{}
	svcs, err := api.ListService((&conversations.ListServiceParams{}).SetPageSize(pageServices))
	if err != nil {
		return fmt.Errorf("services: %w", err)
	}
	rows["services"] += int64(len(svcs))
	for _, svc := range svcs {
		sid := *svc.Sid
		users, err := api.ListServiceUser(sid, (&conversations.ListServiceUserParams{}).SetPageSize(pageUsers))
		if err != nil {
			return fmt.Errorf("users of %s: %w", sid, err)
		}
		rows["users"] += int64(len(users))
		for _, u := range users {
			ucs, err := api.ListServiceUserConversation(sid, *u.Sid,
				(&conversations.ListServiceUserConversationParams{}).SetPageSize(pageUserConversations))
			if err != nil {
				return fmt.Errorf("conversations of user %s: %w", *u.Sid, err)
			}
			rows["user_conversations"] += int64(len(ucs))
		}
		convs, err := api.ListServiceConversation(sid, (&conversations.ListServiceConversationParams{}).SetPageSize(pageConversations))
		if err != nil {
			return fmt.Errorf("conversations of %s: %w", sid, err)
		}
		rows["conversations"] += int64(len(convs))
		for _, c := range convs {
			ps, err := api.ListServiceConversationParticipant(sid, *c.Sid,
				(&conversations.ListServiceConversationParticipantParams{}).SetPageSize(pageParticipants))
			if err != nil {
				return fmt.Errorf("participants of %s: %w", *c.Sid, err)
			}
			rows["participants"] += int64(len(ps))
		}
	}
	return json.NewEncoder(os.Stdout).Encode(result{
		Requests:  rt.n.Load(),
		Rows:      rows,
		ElapsedMS: float64(time.Since(start).Microseconds()) / 1000,
	})
}
