package jobs_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
)

// addFields serves the simulated API with two fields added to every
// participant that the participants table does not have: one at the top
// and one inside messaging_binding.
type addFields struct{ api http.Handler }

func (a addFields) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	a.api.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if strings.HasSuffix(r.URL.Path, "/Participants") {
		body = bytes.ReplaceAll(body, []byte(`"role_sid":`), []byte(`"consent_level":"full","role_sid":`))
		body = bytes.ReplaceAll(body, []byte(`"messaging_binding":{`), []byte(`"messaging_binding":{"carrier":"x",`))
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	io.Copy(w, bytes.NewReader(body))
}

// TestUnknownFieldsAreCountedAndWarnedOnce: fields the API sends that a
// table does not have are left out of the rows, counted per table and
// field in the run record, and warned once per field.
func TestUnknownFieldsAreCountedAndWarnedOnce(t *testing.T) {
	ds := fakeapi.NewDataset(fakeapi.DefaultConfig())
	api := fakeapi.New(fakeapi.Options{Dataset: ds})
	srv := httptest.NewServer(addFields{api})
	t.Cleanup(srv.Close)
	c := api.Credentials()
	cl, err := extract.New(extract.Config{BaseURL: srv.URL, Credentials: extract.Credentials{AccountSID: c.AccountSID, AuthToken: c.AuthToken},
		Concurrency: 8, BaseBackoff: time.Millisecond, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	o := newOutputs(t)
	out := o.open(t, schemas.Export, "run-u", nil, false)
	sum, err := jobs.Export(context.Background(), cl, out, jobs.Config{RunID: "run-u", SnapshotDate: date, Workers: 4,
		Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	participants := int64(0)
	withBinding := int64(0)
	for _, s := range ds.Services() {
		for _, cv := range ds.Conversations(s.SID) {
			for _, p := range ds.Participants(s.SID, cv.SID) {
				participants++
				if p.MessagingBinding != nil {
					withBinding++
				}
			}
		}
	}
	got := sum.Run.UnknownFields["participants"]
	if got["consent_level"] != participants || got["messaging_binding.carrier"] != withBinding || len(got) != 2 {
		t.Errorf("unknown fields of participants %v, want consent_level %d and messaging_binding.carrier %d", got, participants, withBinding)
	}
	if len(sum.Run.UnknownFields) != 1 {
		t.Errorf("unknown fields reported for other tables: %v", sum.Run.UnknownFields)
	}
	for _, f := range []string{"consent_level", "messaging_binding.carrier"} {
		if n := strings.Count(logs.String(), `"field":"`+f+`"`); n != 1 {
			t.Errorf("field %s warned %d times, want once", f, n)
		}
	}
	runs := testkit.Query(t, o.db, "SELECT unknown_fields FROM runs")
	if len(runs) != 1 || !strings.Contains(runs[0]["unknown_fields"].(string), `"consent_level":`) {
		t.Errorf("runs.unknown_fields = %v", runs)
	}
	if cols := testkit.Query(t, o.db, "SELECT count(*) AS n FROM duckdb_columns() WHERE table_name = 'participants' AND column_name IN ('consent_level', 'messaging_binding_carrier')"); cols[0]["n"] != int64(0) {
		t.Error("an unknown field became a column")
	}
}
