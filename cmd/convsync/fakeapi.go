package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/convsync/convsync/internal/fakeapi"
)

func runFakeAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("convsync fakeapi", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8089", "`address` to listen on (host:port; port 0 picks a free one)")
	demo := fs.Bool("demo-data", true, "start from the demo dataset's sizes (the --demo export's data); the size flags override it")
	ds := fakeapi.DemoConfig()
	var f fakeapi.Faults
	var sizes fakeapi.DatasetConfig
	fs.Int64Var(&sizes.Seed, "seed", 0, "dataset seed (0: the chosen defaults' seed)")
	fs.IntVar(&sizes.Services, "services", 0, "Conversation Services, the default one included")
	fs.IntVar(&sizes.UsersPerService, "users", 0, "users per service")
	fs.IntVar(&sizes.ConversationsPerService, "conversations", 0, "conversations per service")
	fs.IntVar(&sizes.ParticipantsPerConversation, "participants", 0, "mean participants per conversation")
	fs.IntVar(&sizes.LargeConversationParticipants, "large-conversation", 0, "participants of each service's large conversation")
	fs.IntVar(&sizes.BusyUserConversations, "busy-user", 0, "conversations of each service's busiest user")
	fs.Int64Var(&f.Seed, "fault-seed", 1, "seed of the fault draws")
	fs.DurationVar(&f.Latency, "latency", 0, "latency added to every request")
	fs.IntVar(&f.MaxInFlight, "max-in-flight", 0, "requests in flight beyond which 429 (code 20429) is returned (0: no cap)")
	fs.IntVar(&f.OtherInFlight, "other-in-flight", 0, "requests a phantom other application of the account keeps in flight: they take max-in-flight slots and count in Twilio-Concurrent-Requests")
	fs.Float64Var(&f.Rate429, "rate-429", 0, "probability of a random 429")
	fs.Float64Var(&f.RetryAfterRate, "retry-after-rate", 0.5, "fraction of 429s carrying Retry-After")
	fs.Float64Var(&f.Rate500, "rate-500", 0, "probability of a 500")
	fs.Float64Var(&f.Rate503, "rate-503", 0, "probability of a 503")
	fs.Float64Var(&f.RateReset, "rate-reset", 0, "probability of a connection reset mid-body")
	fs.Float64Var(&f.RateTruncate, "rate-truncate", 0, "probability of a truncated body")
	fs.Float64Var(&f.RateRepeat, "rate-repeat", 0, "probability that a follow-on page repeats the previous page's last row")
	fs.Float64Var(&f.DeletedConversations, "deleted-conversations", 0, "fraction of conversations deleted mid-crawl (404 on their participants)")
	fs.Func("deleted-services", "comma-separated service `SIDs` listed but 404 on everything under them", func(v string) error {
		for _, sid := range strings.Split(v, ",") {
			if sid = strings.TrimSpace(sid); sid != "" {
				f.DeletedServiceSIDs = append(f.DeletedServiceSIDs, sid)
			}
		}
		return nil
	})
	fs.Float64Var(&f.DeletedUsers, "deleted-users", 0, "fraction of users deleted mid-crawl (404 on their conversations)")
	h := &f.Hostile
	fs.Func("hostile-endpoint", "`endpoint` the hostile answers apply to: "+strings.Join(fakeapi.ListEndpoints, ", ")+
		" or "+fakeapi.EndpointConfiguration+" (default: every list; the child lists for --hostile-html-404 and --hostile-too-long-list; every endpoint for --hostile-echo-authorization and --hostile-huge-retry-after)", func(v string) error {
		if v != fakeapi.EndpointConfiguration && !slices.Contains(fakeapi.ListEndpoints, v) {
			return fmt.Errorf("%q is not one of %s, %s", v, strings.Join(fakeapi.ListEndpoints, ", "), fakeapi.EndpointConfiguration)
		}
		h.Endpoint = v
		return nil
	})
	fs.BoolVar(&h.WrongMetaKey, "hostile-wrong-meta-key", false, "pages whose meta.key names another list, with an empty array under it")
	fs.BoolVar(&h.NullMember, "hostile-null-member", false, "one member of every page's list array is null")
	fs.BoolVar(&h.MissingKey, "hostile-missing-key", false, "one object of every page lacks its key field (sid, conversation_sid, participant_sid)")
	fs.BoolVar(&h.NumericKey, "hostile-numeric-key", false, "one object of every page has its key field as a JSON number")
	fs.BoolVar(&h.HTML404, "hostile-html-404", false, "user conversations and participants answer 404 with a text/html proxy page")
	fs.Func("hostile-endless", "`mode` of endless lists: repeat (every page the first page's rows) or fresh (new rows with fresh SIDs)", func(v string) error {
		switch m := fakeapi.EndlessMode(v); m {
		case fakeapi.EndlessRepeat, fakeapi.EndlessFresh:
			h.EndlessList = m
			return nil
		}
		return fmt.Errorf("%q is not %s or %s", v, fakeapi.EndlessRepeat, fakeapi.EndlessFresh)
	})
	fs.BoolVar(&h.TokenCycle, "hostile-token-cycle", false, "the last page's next_page_url points back to the page before it")
	fs.Int64Var(&h.Oversized, "hostile-oversized", 0, "pad every page to this many `bytes` (inside the first row's attributes; 0: off)")
	fs.BoolVar(&h.EchoAuthorization, "hostile-echo-authorization", false, "error messages echo the request's Authorization header and Basic credentials")
	fs.BoolVar(&h.HugeRetryAfter, "hostile-huge-retry-after", false, "every 429 carries Retry-After: 3600")
	fs.IntVar(&h.TooLongList, "hostile-too-long-list", 0, "list this many `rows` for each service's large conversation and busy user (above 1000: beyond Twilio's maxima; 0: off)")
	if err := parseArgs(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("fakeapi takes no arguments, got %q", fs.Arg(0))
	}
	for name, r := range map[string]float64{"rate-429": f.Rate429, "retry-after-rate": f.RetryAfterRate, "rate-500": f.Rate500,
		"rate-503": f.Rate503, "rate-reset": f.RateReset, "rate-truncate": f.RateTruncate, "rate-repeat": f.RateRepeat,
		"deleted-conversations": f.DeletedConversations, "deleted-users": f.DeletedUsers} {
		if r < 0 || r > 1 {
			return usageError("--%s %v is not a probability between 0 and 1", name, r)
		}
	}
	if f.OtherInFlight < 0 {
		return usageError("--other-in-flight must not be negative")
	}
	if h.Oversized < 0 || h.TooLongList < 0 {
		return usageError("--hostile-oversized and --hostile-too-long-list must not be negative")
	}
	if (h.HTML404 || h.TooLongList > 0) && h.Endpoint != "" && h.Endpoint != fakeapi.EndpointUserConversations && h.Endpoint != fakeapi.EndpointParticipants {
		return usageError("--hostile-html-404 and --hostile-too-long-list apply to --hostile-endpoint %s or %s, not %s",
			fakeapi.EndpointUserConversations, fakeapi.EndpointParticipants, h.Endpoint)
	}
	if err := f.Validate(); err != nil {
		return usageError("%v", err)
	}
	if !*demo {
		ds = fakeapi.DefaultConfig()
	}
	overlay(&ds.Seed, sizes.Seed)
	for _, p := range []struct {
		dst *int
		v   int
	}{
		{&ds.Services, sizes.Services}, {&ds.UsersPerService, sizes.UsersPerService},
		{&ds.ConversationsPerService, sizes.ConversationsPerService},
		{&ds.ParticipantsPerConversation, sizes.ParticipantsPerConversation},
		{&ds.LargeConversationParticipants, sizes.LargeConversationParticipants},
		{&ds.BusyUserConversations, sizes.BusyUserConversations},
	} {
		if p.v < 0 {
			return usageError("dataset sizes must not be negative")
		}
		overlay(p.dst, p.v)
	}
	if err := ds.Validate(); err != nil {
		return sizeUsageError(err)
	}

	start := time.Now()
	srv, err := fakeapi.Start(*listen, fakeapi.Options{Config: &ds, Faults: f})
	if err != nil {
		return fmt.Errorf("fakeapi: listen on %s: %w", *listen, err)
	}
	defer srv.Close()
	c := srv.Credentials()
	// The simulator's credentials are fixed test values, not secrets: they
	// are printed so that clients can be pointed at it.
	fmt.Fprintf(stdout, "convsync fakeapi: simulated Twilio Conversations API (dataset built in %s)\n", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "base URL: %s\n", srv.URL())
	fmt.Fprintf(stdout, "export TWILIO_ACCOUNT_SID=%s TWILIO_AUTH_TOKEN=%s\n", c.AccountSID, c.AuthToken)
	fmt.Fprintf(stdout, "or      TWILIO_API_KEY=%s TWILIO_API_SECRET=%s (with the same TWILIO_ACCOUNT_SID)\n", c.APIKeySID, c.APIKeySecret)
	fmt.Fprintf(stdout, "then:   convsync export --base-url %s\n", srv.URL())
	if modes := hostileModes(f.Hostile); modes != "" {
		fmt.Fprintf(stdout, "hostile answers (%s): %s\n", cmp.Or(f.Hostile.Endpoint, "default endpoints"), modes)
	}
	<-ctx.Done()
	return nil
}

// hostileModes lists the hostile modes switched on, as their flags.
func hostileModes(h fakeapi.Hostile) string {
	var on []string
	for _, m := range []struct {
		name string
		on   bool
	}{
		{"wrong-meta-key", h.WrongMetaKey}, {"null-member", h.NullMember}, {"missing-key", h.MissingKey},
		{"numeric-key", h.NumericKey}, {"html-404", h.HTML404}, {"endless=" + string(h.EndlessList), h.EndlessList != ""},
		{"token-cycle", h.TokenCycle}, {fmt.Sprintf("oversized=%d", h.Oversized), h.Oversized > 0},
		{"echo-authorization", h.EchoAuthorization}, {"huge-retry-after", h.HugeRetryAfter},
		{fmt.Sprintf("too-long-list=%d", h.TooLongList), h.TooLongList > 0},
	} {
		if m.on {
			on = append(on, m.name)
		}
	}
	return strings.Join(on, ", ")
}

// sizeFlags names the flag of each DatasetConfig size field.
var sizeFlags = map[string]string{
	"Services": "services", "UsersPerService": "users", "ConversationsPerService": "conversations",
	"ParticipantsPerConversation": "participants", "LargeConversationParticipants": "large-conversation",
	"BusyUserConversations": "busy-user",
}

// sizeUsageError restates a dataset size refusal in terms of the flags.
func sizeUsageError(err error) error {
	var se *fakeapi.SizeError
	if !errors.As(err, &se) {
		return usageError("%v", err)
	}
	if se.Field != "" {
		return usageError("--%s %d is beyond the limit %d (the simulated dataset is held in memory)", sizeFlags[se.Field], se.Value, se.Limit)
	}
	return usageError("the dataset would hold about %d rows (--services × (--users + --conversations × (--participants + 1) + --large-conversation)), "+
		"beyond the limit %d (about 1 KB of memory a row)", se.Value, se.Limit)
}

func overlay[T comparable](dst *T, v T) {
	var zero T
	if v != zero {
		*dst = v
	}
}
