package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
	if err := parseFlags(fs, args, stderr); err != nil {
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
	<-ctx.Done()
	return nil
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
