package sink_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/transform"
)

// participant is the tracked state of one participant in one snapshot.
type participant struct{ sid, identity, address string }

// commitParticipants commits one history run holding exactly ps.
func commitParticipants(t *testing.T, path, date string, ps []participant) error {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	d, err := time.Parse(time.DateOnly, date)
	if err != nil {
		t.Fatal(err)
	}
	runID := fmt.Sprintf("run-%s-%d", date, time.Now().UnixNano())
	s, err := sink.NewDuckDB(path, []schemas.Table{schemas.Participants}, runID, d, sink.WithHistory())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := transform.NewBuilder(mem, schemas.Participants, transform.Policy{Mode: transform.PIIKeep})
	defer b.Release()
	for _, p := range ps {
		obj := map[string]any{"sid": p.sid, "conversation_sid": "CH1"}
		if p.identity != "" {
			obj["identity"] = p.identity
		}
		if p.address != "" {
			obj["messaging_binding"] = map[string]any{"type": "sms", "address": p.address}
		}
		if err := b.Append(obj, transform.Context{ServiceSID: "IS1", RunID: runID}); err != nil {
			t.Fatal(err)
		}
	}
	rec := b.NewRecord()
	defer rec.Release()
	if err := s.Write(context.Background(), schemas.Participants.Name, rec); err != nil {
		t.Fatal(err)
	}
	return s.Commit(context.Background(), sink.Run{ID: runID, Command: "export", SnapshotDate: d, Status: "succeeded"})
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
		if err := commitParticipants(t, path, s.date, s.ps); err != nil {
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
	db := openDB(t, path)
	rows, err := db.Query(`SELECT sid, identity, messaging_binding_address, strftime(valid_from, '%Y-%m-%d'), strftime(valid_to, '%Y-%m-%d')
		FROM participants_history ORDER BY sid, valid_from`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var sid string
		var id, addr, from, to any
		if err := rows.Scan(&sid, &id, &addr, &from, &to); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(sid, " ", id, " ", addr, " ", from, " ", to))
	}
	rows.Close()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("participants_history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := count(t, db, "SELECT count(*) FROM participants_snapshots"); n != 2+2+2+3 {
		t.Errorf("participants_snapshots holds %d rows, want 9 (the re-run replaced its date)", n)
	}
	if n := count(t, db, "SELECT count(*) FROM participants"); n != 3 {
		t.Errorf("participants holds %d rows, want the last snapshot's 3", n)
	}
	var typ string
	if err := db.QueryRow("SELECT data_type FROM duckdb_columns() WHERE table_name = 'participants_history' AND column_name = 'valid_to'").Scan(&typ); err != nil || typ != "DATE" {
		t.Errorf("valid_to type %q (%v), want DATE", typ, err)
	}
	db.Close()

	// An earlier date than the last is refused, before and at commit, and
	// the refusal changes nothing.
	before := hashTree(t, filepath.Dir(path))
	if err := sink.CheckHistoryDate(context.Background(), path, "2026-01-02"); !errors.Is(err, sink.ErrHistoryDate) {
		t.Errorf("CheckHistoryDate(earlier) = %v, want ErrHistoryDate", err)
	}
	if err := sink.CheckHistoryDate(context.Background(), path, "2026-01-04"); err != nil {
		t.Errorf("CheckHistoryDate(same date) = %v", err)
	}
	if after := hashTree(t, filepath.Dir(path)); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("the read-only date check changed the database file")
	}
	if err := commitParticipants(t, path, "2026-01-02", nil); !errors.Is(err, sink.ErrHistoryDate) {
		t.Errorf("commit of an earlier date = %v, want ErrHistoryDate", err)
	}
	db = openDB(t, path)
	defer db.Close()
	if n := count(t, db, "SELECT count(*) FROM participants"); n != 3 {
		t.Errorf("a refused run changed participants: %d rows", n)
	}
}
