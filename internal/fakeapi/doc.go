// Package fakeapi is a simulated Twilio Conversations v1 REST API, used by
// tests, benchmarks and `convsync export --demo`.
//
// It serves, read-only, the membership resources convsync exports —
// Configuration, Services, Users, User Conversations, Conversations,
// Participants and Participant Conversations — both under
// /v1/Services/{IS}/... and on the default-service routes (/v1/Users,
// /v1/Conversations, ...), with the exact field sets, types, enums, nulls,
// pagination and error bodies of Twilio's OpenAPI spec
// (twilio_conversations_v1.json).
//
// The data comes from a Dataset: deterministic for a DatasetConfig (no wall
// clock; dates derive from Epoch), consistent across endpoints, and
// queryable directly (Dataset.Users, Dataset.Participants, ...) so that
// tests in other packages can compute expected results without HTTP;
// Dataset.JSON and Dataset.DefaultRouteJSON render any object exactly as
// the API does.
//
// A Server is an http.Handler (usable with httptest.NewServer) or can be
// started on an address with Start. It authenticates with HTTP Basic
// (account SID + auth token, or API key SID + secret) and can inject
// faults (latency, concurrency cap, 429/500/503, connection resets,
// truncated bodies, resources deleted mid-crawl, a phantom other
// application's load) and hostile answers a client must refuse to trust
// (Faults.Hostile: wrong meta keys, null or keyless rows, HTML 404s,
// endless or cycling lists, oversized pages, credentials echoed in errors,
// huge Retry-After, too-long lists), all counted in Counters. Every
// response carries Twilio-Concurrent-Requests.
//
//	ds := fakeapi.NewDataset(fakeapi.DefaultConfig())
//	srv, err := fakeapi.Start("127.0.0.1:0", fakeapi.Options{Dataset: ds})
//	if err != nil { ... }
//	defer srv.Close()
//	creds := srv.Credentials() // point a client at srv.URL() with these
package fakeapi
