package sink_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/rs/zerolog"
	"github.com/valyala/fastjson"

	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/sink/duckdb"
	"github.com/convsync/convsync/sink/internal/sinktest"
	"github.com/convsync/convsync/sink/runs"
	"github.com/convsync/convsync/transform"
)

// participant is the tracked state of one participant in one snapshot.
type participant struct{ sid, identity, address string }

// publishParticipants publishes one history run holding exactly ps.
func publishParticipants(t *testing.T, path, date string, ps []participant) error {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	d, err := time.Parse(time.DateOnly, date)
	if err != nil {
		t.Fatal(err)
	}
	runID := fmt.Sprintf("run-%s-%d", date, time.Now().UnixNano())
	out, err := sink.Open(context.Background(), sink.Config{DuckDB: path, History: true, Command: "export", RunID: runID,
		SnapshotDate: d, Tables: []schemas.Table{schemas.Participants}, Logger: zerolog.Nop(), Allocator: mem})
	if err != nil {
		return err
	}
	defer out.Close()
	b := transform.NewBuilder(mem, schemas.Participants, transform.Policy{Mode: transform.PIIKeep})
	defer b.Release()
	var p fastjson.Parser
	for _, x := range ps {
		js := fmt.Sprintf(`{"sid": %q, "conversation_sid": "CH1"`, x.sid)
		if x.identity != "" {
			js += fmt.Sprintf(`, "identity": %q`, x.identity)
		}
		if x.address != "" {
			js += fmt.Sprintf(`, "messaging_binding": {"type": "sms", "address": %q}`, x.address)
		}
		v, err := p.Parse(js + "}")
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Append(v, transform.Context{ServiceSID: "IS1", RunID: runID}); err != nil {
			t.Fatal(err)
		}
	}
	rec := b.NewRecord()
	defer rec.Release()
	if err := out.Write(context.Background(), schemas.Participants.Name, rec); err != nil {
		t.Fatal(err)
	}
	_, err = out.Publish(context.Background(), runs.Record{RunID: runID, Command: "export"}, nil, nil)
	return err
}

// TestParticipantsHistory walks a participant set through changes, a
// change back, an absence, a same-date re-run and an earlier date, and
// checks participants_history stretch by stretch.
func TestParticipantsHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.duckdb")
	steps := []struct {
		date string
		ps   []participant
	}{
		{"2026-01-01", []participant{{"MB1", "ann", ""}, {"MB2", "", "+1555"}}},
		{"2026-01-02", []participant{{"MB1", "ann", ""}, {"MB3", "cy", ""}}},                        // MB2 gone, MB3 new
		{"2026-01-03", []participant{{"MB1", "bob", ""}, {"MB2", "", "+1555"}}},                     // MB1 changed, MB2 back, MB3 gone
		{"2026-01-04", []participant{{"MB1", "ann", ""}, {"MB2", "", "+1666"}}},                     // change back; address change
		{"2026-01-04", []participant{{"MB1", "ann", ""}, {"MB2", "", "+1666"}, {"MB4", "dee", ""}}}, // same date re-run replaces it
	}
	for _, s := range steps {
		if err := publishParticipants(t, path, s.date, s.ps); err != nil {
			t.Fatalf("%s: %v", s.date, err)
		}
	}
	want := []string{
		"MB1 ann <nil> 2026-01-01 2026-01-03",
		"MB1 bob <nil> 2026-01-03 2026-01-04",
		"MB1 ann <nil> 2026-01-04 <nil>",
		"MB2 <nil> +1555 2026-01-01 2026-01-02",
		"MB2 <nil> +1555 2026-01-03 2026-01-04",
		"MB2 <nil> +1666 2026-01-04 <nil>",
		"MB3 cy <nil> 2026-01-02 2026-01-03",
		"MB4 dee <nil> 2026-01-04 <nil>",
	}
	db := sinktest.OpenDB(t, path)
	rows, err := db.Query(`SELECT sid, identity, messaging_binding_address, strftime(valid_from, '%Y-%m-%d'), strftime(valid_to, '%Y-%m-%d'),
		conversation_sid, chat_service_sid FROM participants_history ORDER BY sid, valid_from`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var sid, conv, svc string
		var id, addr, from, to any
		if err := rows.Scan(&sid, &id, &addr, &from, &to, &conv, &svc); err != nil {
			t.Fatal(err)
		}
		if conv != "CH1" || svc != "IS1" {
			t.Errorf("%s carries conversation %q service %q", sid, conv, svc)
		}
		got = append(got, fmt.Sprint(sid, " ", id, " ", addr, " ", from, " ", to))
	}
	rows.Close()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("participants_history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	count := func(q string) (n int64) {
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	if n := count("SELECT count(*) FROM participants_snapshots"); n != 2+2+2+3 {
		t.Errorf("participants_snapshots holds %d rows, want 9 (the re-run replaced its date)", n)
	}
	if n := count("SELECT count(*) FROM participants"); n != 3 {
		t.Errorf("participants holds %d rows, want the last snapshot's 3", n)
	}
	var typ string
	if err := db.QueryRow("SELECT data_type FROM duckdb_columns() WHERE table_name = 'participants_history' AND column_name = 'valid_to'").Scan(&typ); err != nil || typ != "DATE" {
		t.Errorf("valid_to type %q (%v), want DATE", typ, err)
	}
	db.Close()

	// An earlier date than the last is refused before anything is written,
	// and the refusal changes nothing.
	before := testkit.HashTree(t, filepath.Dir(path), isLock)
	err = publishParticipants(t, path, "2026-01-02", nil)
	if !errors.Is(err, duckdb.ErrHistoryDate) || !errors.Is(err, sink.ErrBadOutput) {
		t.Errorf("a run of an earlier date: %v, want ErrHistoryDate as a bad output", err)
	}
	if after := testkit.HashTree(t, filepath.Dir(path), isLock); !maps.Equal(before, after) {
		t.Error("the refused run changed the database folder")
	}
}
