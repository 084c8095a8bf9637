package jobs_test

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
)

// TestLookupFindsExactlyTheDatasetsConversations looks subjects up by
// identity (with '+', '.', digits after dots, '/', spaces, '%', unicode) and
// by address (SMS, WhatsApp) over HTTP, through the service-scoped route of
// every service, and checks both outputs hold exactly the rows the dataset
// holds for them.
func TestLookupFindsExactlyTheDatasetsConversations(t *testing.T) {
	ds, srv := startAPI(t, fakeapi.DefaultConfig(), fakeapi.Faults{Seed: 3, Rate429: 0.05, RateReset: 0.03})
	var subjects []extract.Subject
	kinds := map[string]bool{}
	for _, id := range []string{"jane+support@example.com", "john.doe.42", "a.b.c.1.2.3", "ops/night shift", "first last", "100% legit", "李雷", "Zoë Ångström", "nobody-at-all"} {
		subjects = append(subjects, extract.Subject{Identity: id})
	}
	for _, s := range ds.Services() {
		for _, a := range ds.Addresses(s.SID) {
			kind := "sms"
			if strings.HasPrefix(a, "whatsapp:") {
				kind = "whatsapp"
			}
			if !kinds[kind] {
				kinds[kind] = true
				subjects = append(subjects, extract.Subject{Address: a})
			}
		}
	}
	if !kinds["sms"] || !kinds["whatsapp"] {
		t.Fatalf("dataset lacks an SMS or WhatsApp address: %v", kinds)
	}
	o := newOutputs(t)
	out, err := sink.Open(context.Background(), sink.Config{DuckDB: o.db, Parquet: o.pq, Command: "lookup", RunID: "run-l",
		SnapshotDate: date, Tables: schemas.Lookup, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	srv.ResetCounters()
	sum, err := jobs.Lookup(context.Background(), client(t, srv, 4), out, subjects, jobs.Config{RunID: "run-l", SnapshotDate: date, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]testkit.Row{}
	for i, s := range subjects {
		rows := testkit.ExpectedLookup(t, ds, srv, s.Kind(), s.Value())
		if len(rows) == 0 && s.Value() != "nobody-at-all" {
			t.Errorf("dataset has no conversations for subject %q: pick another", s.Value())
		}
		for k, r := range rows {
			want[k] = r
		}
		notFound := false
		for _, j := range sum.NotFound {
			notFound = notFound || j == i
		}
		if notFound != (len(rows) == 0) {
			t.Errorf("subject %q: reported not found = %v, dataset rows %d", s.Value(), notFound, len(rows))
		}
	}
	testkit.CompareTable(t, "participant_conversations", testkit.Query(t, o.db, "SELECT * FROM participant_conversations"), want, "run_id")
	testkit.CompareTable(t, "participant_conversations", testkit.ReadParquet(t, o.pq, "participant_conversations"), want, "run_id", "snapshot_date")
	if sum.Run.Rows["participant_conversations"] != int64(len(want)) {
		t.Errorf("run record: %d rows, want %d", sum.Run.Rows["participant_conversations"], len(want))
	}
	services := len(ds.Services())
	if got := srv.Counters().ByEndpoint[fakeapi.EndpointParticipantConversations]; got < int64(len(subjects)*services) {
		t.Errorf("%d ParticipantConversations requests for %d subjects in %d services", got, len(subjects), services)
	}
	for _, name := range []string{"participants", "users", "conversations"} {
		if n := testkit.Query(t, o.db, "SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = '"+name+"'")[0]["n"]; n != int64(0) {
			t.Errorf("a lookup into a fresh file created table %s", name)
		}
	}
}
