package transform

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/valyala/fastjson"

	"github.com/convsync/convsync/schemas"
)

// decode parses one API object as package extract hands it out.
func decode(t testing.TB, s string) *fastjson.Value {
	t.Helper()
	v, err := fastjson.Parse(s) // a parser of its own: the value stays valid
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// newBuilder returns a builder over a checked allocator; at the end of the
// test the builder is released and every byte must have been given back.
func newBuilder(t *testing.T, tab schemas.Table, p Policy) *Builder {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	b := NewBuilder(mem, tab, p)
	t.Cleanup(b.Release)
	return b
}

// record returns the rows appended so far, released at the end of the test.
func record(t *testing.T, b *Builder) arrow.Record {
	t.Helper()
	rec := b.NewRecord()
	t.Cleanup(rec.Release)
	return rec
}

// cell returns row 0 of the named column as a Go value (nil for NULL).
func cell(t *testing.T, rec arrow.Record, name string) any {
	t.Helper()
	return cellAt(t, rec, name, 0)
}

func cellAt(t *testing.T, rec arrow.Record, name string, row int) any {
	t.Helper()
	idx := rec.Schema().FieldIndices(name)
	if len(idx) != 1 {
		t.Fatalf("no column %s", name)
	}
	col := rec.Column(idx[0])
	if col.IsNull(row) {
		return nil
	}
	switch a := col.(type) {
	case *array.String:
		return a.Value(row)
	case *array.Int64:
		return a.Value(row)
	case *array.Boolean:
		return a.Value(row)
	case *array.Timestamp:
		return a.Value(row).ToTime(arrow.Microsecond).UTC()
	}
	t.Fatalf("unexpected array %T", col)
	return nil
}

// checkCells compares cells of a row with want (time.Time compared with Equal).
func checkCells(t *testing.T, rec arrow.Record, row int, want map[string]any) {
	t.Helper()
	for name, w := range want {
		got := cellAt(t, rec, name, row)
		if wt, ok := w.(time.Time); ok {
			if gt, ok := got.(time.Time); !ok || !gt.Equal(wt) {
				t.Errorf("row %d: %s = %v, want %v", row, name, got, w)
			}
			continue
		}
		if got != w {
			t.Errorf("row %d: %s = %#v, want %#v", row, name, got, w)
		}
	}
}

const participantJSON = `{
  "account_sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "chat_service_sid": "ISaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "conversation_sid": "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "sid": "MBaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "identity": null,
  "attributes": "{ \"role\": \"driver\" }",
  "messaging_binding": {"type": "sms", "address": "+15558675310", "proxy_address": "+15017122661", "projected_address": null, "name": "Jane", "level": "participant"},
  "role_sid": "RLaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  "date_created": "2016-03-24T21:05:50Z",
  "date_updated": "2016-03-24T23:05:50+02:00",
  "url": "https://conversations.twilio.com/v1/Services/IS/Conversations/CH/Participants/MB",
  "last_read_message_index": 7,
  "last_read_timestamp": "2023-01-02T03:04:05.123456Z",
  "links": {"conversation": "https://conversations.twilio.com/v1/Services/IS/Conversations/CH"}
}`

func TestAppendFlattensAndConverts(t *testing.T) {
	b := newBuilder(t, schemas.Participants, Policy{Mode: PIIKeep})
	if err := b.Append(decode(t, participantJSON), Context{ServiceSID: "ISbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", RunID: "run-1"}); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 1 || b.Bytes() == 0 {
		t.Errorf("Len = %d, Bytes = %d", b.Len(), b.Bytes())
	}
	rec := record(t, b)
	if rec.NumRows() != 1 {
		t.Fatalf("rows = %d", rec.NumRows())
	}
	checkCells(t, rec, 0, map[string]any{
		"account_sid":                         "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"conversation_sid":                    "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"sid":                                 "MBaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"chat_service_sid":                    "ISbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", // the service read from wins
		"identity":                            nil,
		"attributes":                          `{ "role": "driver" }`,
		"messaging_binding_type":              "sms",
		"messaging_binding_address":           "+15558675310",
		"messaging_binding_proxy_address":     "+15017122661",
		"messaging_binding_projected_address": nil,
		"messaging_binding_name":              "Jane",
		"messaging_binding_level":             "participant",
		"role_sid":                            "RLaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"date_created":                        time.Date(2016, 3, 24, 21, 5, 50, 0, time.UTC),
		"date_updated":                        time.Date(2016, 3, 24, 21, 5, 50, 0, time.UTC),
		"url":                                 "https://conversations.twilio.com/v1/Services/IS/Conversations/CH/Participants/MB",
		"last_read_message_index":             int64(7),
		"last_read_timestamp":                 time.Date(2023, 1, 2, 3, 4, 5, 123456000, time.UTC),
		"run_id":                              "run-1",
	})
	// links is left out on purpose, chat_service_sid is a column: neither
	// is unknown.
	if u := b.UnknownFields(); len(u) != 0 {
		t.Errorf("unknown fields = %v", u)
	}
	// After NewRecord the builder starts a new batch.
	if b.Len() != 0 || b.Bytes() != 0 {
		t.Errorf("after NewRecord: Len = %d, Bytes = %d", b.Len(), b.Bytes())
	}
}

func TestAppendTimersAndJSONText(t *testing.T) {
	cases := []struct {
		name           string
		timers         string
		inactive, clos any
	}{
		{"null", `null`, nil, nil},
		{"empty", `{}`, nil, nil},
		{"partial", `{"date_inactive": "2020-01-01T00:00:00Z"}`, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{"full", `{"date_inactive": "2020-01-01T00:00:00.5Z", "date_closed": "2020-01-02T00:00:00Z"}`,
			time.Date(2020, 1, 1, 0, 0, 0, 5e8, time.UTC), time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"null members", `{"date_inactive": null, "date_closed": ""}`, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, schemas.Conversations, Policy{Mode: PIIKeep})
			obj := decode(t, `{"sid": "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "state": "active", "bindings": {"sms": {"address": "x"}}, "timers": `+tc.timers+`}`)
			if err := b.Append(obj, Context{}); err != nil {
				t.Fatal(err)
			}
			rec := record(t, b)
			for col, w := range map[string]any{"timers_date_inactive": tc.inactive, "timers_date_closed": tc.clos} {
				got := cell(t, rec, col)
				if w == nil {
					if got != nil {
						t.Errorf("%s = %v, want NULL", col, got)
					}
				} else if gt, ok := got.(time.Time); !ok || !gt.Equal(w.(time.Time)) {
					t.Errorf("%s = %v, want %v", col, got, w)
				}
			}
			if got := cell(t, rec, "bindings"); got != `{"sms":{"address":"x"}}` {
				t.Errorf("bindings = %v", got)
			}
			if got := cell(t, rec, "chat_service_sid"); got != nil {
				t.Errorf("chat_service_sid without context = %v, want NULL", got)
			}
			if u := b.UnknownFields(); len(u) != 0 {
				t.Errorf("unknown fields = %v", u)
			}
		})
	}
}

// TestAppendNestedObjects: the flattened objects of every table land in
// their columns; a table without such a column counts the field unknown.
func TestAppendNestedObjects(t *testing.T) {
	b := newBuilder(t, schemas.ParticipantConversations, Policy{Mode: PIIKeep})
	obj := decode(t, `{
	  "participant_sid": "MB1", "conversation_sid": "CH1",
	  "participant_messaging_binding": {"type": "whatsapp", "address": "whatsapp:+1555", "proxy_address": "whatsapp:+1444", "projected_address": "+1333", "name": "N", "level": "participant"},
	  "conversation_timers": {"date_inactive": "2021-02-03T04:05:06Z", "date_closed": "2021-02-04T04:05:06.000001Z"},
	  "conversation_attributes": {"k": ["v", 1, true, null]},
	  "conversation_state": "inactive"
	}`)
	if err := b.Append(obj, Context{ServiceSID: "IS1", RunID: "r", SubjectKind: "address", Subject: "whatsapp:+1555"}); err != nil {
		t.Fatal(err)
	}
	rec := record(t, b)
	checkCells(t, rec, 0, map[string]any{
		"subject_kind":                                    "address",
		"subject":                                         "whatsapp:+1555",
		"chat_service_sid":                                "IS1",
		"participant_sid":                                 "MB1",
		"participant_messaging_binding_type":              "whatsapp",
		"participant_messaging_binding_address":           "whatsapp:+1555",
		"participant_messaging_binding_proxy_address":     "whatsapp:+1444",
		"participant_messaging_binding_projected_address": "+1333",
		"participant_messaging_binding_name":              "N",
		"participant_messaging_binding_level":             "participant",
		"conversation_timers_date_inactive":               time.Date(2021, 2, 3, 4, 5, 6, 0, time.UTC),
		"conversation_timers_date_closed":                 time.Date(2021, 2, 4, 4, 5, 6, 1000, time.UTC),
		"conversation_attributes":                         `{"k":["v",1,true,null]}`,
		"conversation_state":                              "inactive",
		"run_id":                                          "r",
	})
}

func TestPIIPolicies(t *testing.T) {
	key := []byte("k3y")
	mac := func(v string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(v))
		return hex.EncodeToString(m.Sum(nil))
	}
	cases := []struct {
		mode string
		want map[string]any
	}{
		{PIIKeep, map[string]any{"messaging_binding_address": "+15558675310", "attributes": `{ "role": "driver" }`, "messaging_binding_name": "Jane"}},
		{PIIHash, map[string]any{"messaging_binding_address": mac("+15558675310"), "attributes": nil, "messaging_binding_name": mac("Jane"), "messaging_binding_proxy_address": mac("+15017122661")}},
		{PIIRedact, map[string]any{"messaging_binding_address": nil, "attributes": nil, "messaging_binding_name": nil, "messaging_binding_proxy_address": nil}},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			p := Policy{Mode: tc.mode, Key: key}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			b := newBuilder(t, schemas.Participants, p)
			if err := b.Append(decode(t, participantJSON), Context{}); err != nil {
				t.Fatal(err)
			}
			rec := record(t, b)
			checkCells(t, rec, 0, tc.want)
			// Columns that are not personal stay as they are in every mode;
			// a null PII value stays null.
			checkCells(t, rec, 0, map[string]any{"messaging_binding_type": "sms", "messaging_binding_level": "participant",
				"sid": "MBaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "identity": nil, "messaging_binding_projected_address": nil})
		})
	}
}

// TestPIIDerivedAndTolerated: the policy applies to every value of a
// tagged column, whatever its origin: the subject convsync supplies, a
// created_by tagged by convsync, a number sent where a string is, and an
// object kept as JSON text.
func TestPIIDerivedAndTolerated(t *testing.T) {
	key := []byte("another key")
	p := Policy{Mode: PIIHash, Key: key}
	obj := `{"participant_identity": 12345, "conversation_created_by": "bob", "conversation_attributes": {"a": 1},
	  "conversation_friendly_name": "Bob's", "conversation_state": "active", "participant_messaging_binding": {"type": "sms", "address": "+1555"}}`
	rc := Context{SubjectKind: "identity", Subject: "bob", ServiceSID: "IS1"}
	for _, tc := range []struct {
		mode string
		want map[string]any
	}{
		{PIIHash, map[string]any{"subject": p.Hash("bob"), "subject_kind": "identity", "participant_identity": p.Hash("12345"),
			"conversation_created_by": p.Hash("bob"), "conversation_attributes": nil, "conversation_friendly_name": p.Hash("Bob's"),
			"conversation_state": "active", "participant_messaging_binding_type": "sms", "participant_messaging_binding_address": p.Hash("+1555"),
			"chat_service_sid": "IS1"}},
		{PIIRedact, map[string]any{"subject": nil, "subject_kind": "identity", "participant_identity": nil,
			"conversation_created_by": nil, "conversation_attributes": nil, "conversation_friendly_name": nil,
			"conversation_state": "active", "participant_messaging_binding_type": "sms", "participant_messaging_binding_address": nil,
			"chat_service_sid": "IS1"}},
		{PIIKeep, map[string]any{"subject": "bob", "participant_identity": "12345", "conversation_attributes": `{"a":1}`}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			b := newBuilder(t, schemas.ParticipantConversations, Policy{Mode: tc.mode, Key: key})
			if err := b.Append(decode(t, obj), rc); err != nil {
				t.Fatal(err)
			}
			checkCells(t, record(t, b), 0, tc.want)
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	cases := []struct {
		p       Policy
		wantErr string
		is      error
	}{
		{Policy{Mode: PIIKeep}, "", nil},
		{Policy{Mode: PIIRedact}, "", nil},
		{Policy{Mode: PIIHash, Key: []byte("x")}, "", nil},
		// The key's variable is named by cmd, which reads it.
		{Policy{Mode: PIIHash}, "needs a key", ErrNoPIIKey},
		{Policy{Mode: PIIHash, Key: []byte{}}, "needs a key", ErrNoPIIKey},
		{Policy{Mode: "scramble"}, `unknown PII mode "scramble"`, nil},
		{Policy{}, "unknown PII mode", nil},
	}
	for _, tc := range cases {
		err := tc.p.Validate()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: err = %v, want %q", tc.p, err, tc.wantErr)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%+v: err = %v, want %v", tc.p, err, tc.is)
		}
	}
}

func TestDisplay(t *testing.T) {
	p := Policy{Mode: PIIHash, Key: []byte("k")}
	if got := p.Display("bob"); got != "hmac:"+p.Hash("bob") {
		t.Errorf("hash Display = %q", got)
	}
	if got := (Policy{Mode: PIIRedact}).Display("bob"); got != "[redacted]" {
		t.Errorf("redact Display = %q", got)
	}
	if got := (Policy{Mode: PIIKeep}).Display("bob"); got != "bob" {
		t.Errorf("keep Display = %q", got)
	}
}

// TestAppendErrorsNameColumnNotValue: a value of the wrong type fails the
// Append with an error that names the column (and the JSON type found),
// never the value, which may be personal; nothing of the object is
// appended, and the next Append is not affected by what the failed one
// had read.
func TestAppendErrorsNameColumnNotValue(t *testing.T) {
	const secret = "secret-person"
	cases := []struct {
		name    string
		tab     schemas.Table
		obj     string
		wantCol string
		bug     string
	}{
		{"bad timestamp", schemas.Participants, `{"sid": "MB-bad", "identity": "secret-person", "date_created": "yesterday"}`, "participants.date_created", ""},
		{"timestamp holding PII", schemas.Participants, `{"sid": "MB-bad", "date_created": "secret-person"}`, "participants.date_created",
			"ParseTime's error, returned by Append, quotes the value"},
		{"timestamp a number", schemas.Participants, `{"sid": "MB-bad", "date_updated": 1700000000}`, "participants.date_updated", ""},
		{"bad int", schemas.Participants, `{"sid": "MB-bad", "identity": "secret-person", "last_read_message_index": "seven"}`, "participants.last_read_message_index", ""},
		{"int holding PII", schemas.Participants, `{"sid": "MB-bad", "last_read_message_index": "secret-person"}`, "participants.last_read_message_index", ""},
		{"int a fraction", schemas.Participants, `{"sid": "MB-bad", "last_read_message_index": 7.5}`, "participants.last_read_message_index", ""},
		{"int too large", schemas.Participants, `{"sid": "MB-bad", "last_read_message_index": 92233720368547758070}`, "participants.last_read_message_index", ""},
		{"int a boolean", schemas.Participants, `{"sid": "MB-bad", "last_read_message_index": true}`, "participants.last_read_message_index", ""},
		{"bad string", schemas.Participants, `{"sid": "MB-bad", "identity": ["secret-person"]}`, "participants.identity", ""},
		{"string an object", schemas.Participants, `{"sid": "MB-bad", "identity": {"name": "secret-person"}}`, "participants.identity", ""},
		{"binding a string", schemas.Participants, `{"sid": "MB-bad", "messaging_binding": "secret-person"}`, "participants: messaging_binding", ""},
		{"binding member an array", schemas.Participants, `{"sid": "MB-bad", "messaging_binding": {"type": "sms", "address": ["secret-person"]}}`, "participants.messaging_binding_address", ""},
		{"timers an array", schemas.Conversations, `{"sid": "CH-bad", "timers": ["secret-person"]}`, "conversations: timers", ""},
		{"timer a number", schemas.Conversations, `{"sid": "CH-bad", "timers": {"date_closed": 5}}`, "conversations.timers_date_closed", ""},
		{"bool a number", schemas.Users, `{"sid": "US-bad", "identity": "secret-person", "is_online": 1}`, "users.is_online", ""},
		{"bool holding PII", schemas.Users, `{"sid": "US-bad", "is_notifiable": "secret-person"}`, "users.is_notifiable", ""},
		{"row not an object", schemas.Users, `["secret-person"]`, "users", ""},
		{"row a string", schemas.Users, `"secret-person"`, "users", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, tc.tab, Policy{Mode: PIIKeep})
			// A good row first: the failed one must leave it alone.
			if err := b.Append(decode(t, `{"sid": "first"}`), Context{RunID: "r"}); err != nil {
				t.Fatal(err)
			}
			bytesBefore := b.Bytes()
			err := b.Append(decode(t, tc.obj), Context{RunID: "r", ServiceSID: "IS1"})
			if err == nil || !strings.Contains(err.Error(), tc.wantCol) {
				t.Fatalf("err = %v, want mention of %s", err, tc.wantCol)
			}
			if b.Len() != 1 || b.Bytes() != bytesBefore {
				t.Errorf("a failed Append left %d rows, %d bytes (want 1, %d)", b.Len(), b.Bytes(), bytesBefore)
			}
			// The next Append is correct: nothing the failed one read
			// (its sid, its identity) shows in it.
			if err := b.Append(decode(t, `{"account_sid": "AC1"}`), Context{RunID: "r2"}); err != nil {
				t.Fatal(err)
			}
			rec := record(t, b)
			if rec.NumRows() != 2 {
				t.Fatalf("record has %d rows, want 2", rec.NumRows())
			}
			checkCells(t, rec, 0, map[string]any{"sid": "first", "run_id": "r", "chat_service_sid": nil})
			checkCells(t, rec, 1, map[string]any{"sid": nil, "account_sid": "AC1", "run_id": "r2", "chat_service_sid": nil})
			for _, name := range []string{"identity", "date_created", "last_read_message_index", "is_online", "messaging_binding_address"} {
				if idx := rec.Schema().FieldIndices(name); len(idx) == 1 && !rec.Column(idx[0]).IsNull(1) {
					t.Errorf("%s of the next row = %v, want NULL", name, cellAt(t, rec, name, 1))
				}
			}
			if strings.Contains(err.Error(), secret) {
				if tc.bug != "" {
					fixedBug(t, tc.bug, "error reveals the value: %v", err)
				}
				t.Errorf("error reveals a PII value: %v", err)
			}
		})
	}
}

// fixedBug fails a test whose check found a bug that was fixed: each
// call names the bug, so a regression says what came back.
func fixedBug(t *testing.T, bug string, format string, args ...any) {
	t.Helper()
	t.Fatalf("a fixed bug is back (%s): %s", bug, fmt.Sprintf(format, args...))
}

func TestHashIsStableAcrossBuilders(t *testing.T) {
	p := Policy{Mode: PIIHash, Key: []byte("same key")}
	var got []string
	for _, tab := range []schemas.Table{schemas.Users, schemas.Participants} {
		t.Run(tab.Name, func(t *testing.T) {
			b := newBuilder(t, tab, p)
			if err := b.Append(decode(t, `{"identity": "zoë+1@example.com"}`), Context{}); err != nil {
				t.Fatal(err)
			}
			got = append(got, cell(t, record(t, b), "identity").(string))
		})
	}
	if len(got) != 2 || got[0] != got[1] || got[0] != p.Hash("zoë+1@example.com") || bytes.ContainsAny([]byte(got[0]), "ABCDEF") {
		t.Errorf("hashes differ or are not lowercase hex HMAC: %v", got)
	}
	// The builder's reused HMAC state gives the same hash row after row.
	b := newBuilder(t, schemas.Users, p)
	for _, id := range []string{"a", "b", "a"} {
		if err := b.Append(decode(t, `{"identity": "`+id+`"}`), Context{}); err != nil {
			t.Fatal(err)
		}
	}
	rec := record(t, b)
	checkCells(t, rec, 0, map[string]any{"identity": p.Hash("a")})
	checkCells(t, rec, 1, map[string]any{"identity": p.Hash("b")})
	checkCells(t, rec, 2, map[string]any{"identity": p.Hash("a")})
}

// TestLenientValues: values a real account or a proxy may send in a looser
// form than the spec's still land typed.
func TestLenientValues(t *testing.T) {
	cases := []struct {
		name string
		tab  schemas.Table
		obj  string
		col  string
		want any
	}{
		{"timestamp with a space", schemas.UserConversations, `{"date_created": "2020-05-06 07:08:09Z"}`, "date_created", time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)},
		{"timestamp without zone", schemas.UserConversations, `{"date_created": "2020-05-06T07:08:09.5"}`, "date_created", time.Date(2020, 5, 6, 7, 8, 9, 5e8, time.UTC)},
		{"timestamp with a space, without zone", schemas.UserConversations, `{"date_created": "2020-05-06 07:08:09"}`, "date_created", time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)},
		{"timestamp with offset", schemas.UserConversations, `{"date_created": "2020-05-06T09:08:09+02:00"}`, "date_created", time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)},
		{"timestamp in nanoseconds", schemas.UserConversations, `{"date_created": "2020-05-06T07:08:09.123456789Z"}`, "date_created", time.Date(2020, 5, 6, 7, 8, 9, 123456000, time.UTC)},
		{"empty timestamp", schemas.UserConversations, `{"date_created": ""}`, "date_created", nil},
		{"null timestamp", schemas.UserConversations, `{"date_created": null}`, "date_created", nil},
		{"integer as string", schemas.UserConversations, `{"unread_messages_count": "12"}`, "unread_messages_count", int64(12)},
		{"integer as string with spaces", schemas.UserConversations, `{"unread_messages_count": " 12 "}`, "unread_messages_count", int64(12)},
		{"negative integer as string", schemas.UserConversations, `{"last_read_message_index": "-1"}`, "last_read_message_index", int64(-1)},
		{"large integer", schemas.UserConversations, `{"unread_messages_count": 9007199254740993}`, "unread_messages_count", int64(9007199254740993)},
		{"null integer", schemas.UserConversations, `{"unread_messages_count": null}`, "unread_messages_count", nil},
		{"attributes as an object", schemas.UserConversations, `{"attributes": {"a": [1, "x"]}}`, "attributes", `{"a":[1,"x"]}`},
		{"attributes as an array", schemas.Users, `{"attributes": [1, {"b": null}]}`, "attributes", `[1,{"b":null}]`},
		{"attributes as a string", schemas.Users, `{"attributes": "{\"a\": 1}"}`, "attributes", `{"a": 1}`},
		{"attributes as a number", schemas.Users, `{"attributes": 5}`, "attributes", `5`},
		{"string as a number", schemas.Users, `{"friendly_name": 1234.50}`, "friendly_name", `1234.50`},
		{"string as a boolean", schemas.Users, `{"role_sid": false}`, "role_sid", `false`},
		{"string with escapes", schemas.Users, `{"friendly_name": "a\"b\\c\u00e9\n"}`, "friendly_name", "a\"b\\cé\n"},
		{"empty string", schemas.Users, `{"friendly_name": ""}`, "friendly_name", ""},
		{"boolean as string", schemas.Users, `{"is_online": "true"}`, "is_online", true},
		{"boolean as string, false", schemas.Users, `{"is_notifiable": "false"}`, "is_notifiable", false},
		{"boolean", schemas.Users, `{"is_notifiable": false}`, "is_notifiable", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder(t, tc.tab, Policy{Mode: PIIKeep})
			if err := b.Append(decode(t, tc.obj), Context{}); err != nil {
				t.Fatal(err)
			}
			checkCells(t, record(t, b), 0, map[string]any{tc.col: tc.want})
		})
	}
}

// TestUnknownFields: fields a table does not have are left out and
// counted per name, nested ones as parent.child; links is left out
// silently, and so is a field named like a column convsync supplies
// itself.
func TestUnknownFields(t *testing.T) {
	b := newBuilder(t, schemas.Participants, Policy{Mode: PIIKeep})
	objs := []string{
		`{"sid": "MB1", "brand_new": 1, "links": {"a": "b"}, "chat_service_sid": "ISx", "run_id": "forged",
		  "messaging_binding": {"type": "sms", "new_child": true, "links": {}}, "timers": {"date_closed": "x"}}`,
		`{"sid": "MB2", "brand_new": {"deep": 1}, "messaging_binding": null}`,
		`{"sid": "MB3"}`,
	}
	for _, o := range objs {
		if err := b.Append(decode(t, o), Context{ServiceSID: "IS1", RunID: "run"}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int64{"brand_new": 2, "messaging_binding.new_child": 1, "messaging_binding.links": 1, "timers": 1}
	if got := b.UnknownFields(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("unknown fields = %v, want %v", got, want)
	}
	rec := record(t, b)
	// The values convsync supplies win over fields of the same name.
	for i := range 3 {
		checkCells(t, rec, i, map[string]any{"chat_service_sid": "IS1", "run_id": "run", "sid": fmt.Sprint("MB", i+1)})
	}
	checkCells(t, rec, 0, map[string]any{"messaging_binding_type": "sms"})

	t.Run("bounded", func(t *testing.T) {
		b := newBuilder(t, schemas.Users, Policy{Mode: PIIKeep})
		var sb strings.Builder
		sb.WriteString(`{"sid": "US1"`)
		for i := range 100 {
			fmt.Fprintf(&sb, `, "f%03d": 1`, i)
		}
		long := strings.Repeat("n", 200)
		fmt.Fprintf(&sb, `, %q: 1}`, long)
		for range 2 {
			if err := b.Append(decode(t, sb.String()), Context{}); err != nil {
				t.Fatal(err)
			}
		}
		got := b.UnknownFields()
		if len(got) != maxUnknown+1 || got[otherUnknown] != 2*(101-maxUnknown) || got["f000"] != 2 {
			t.Errorf("%d names counted, %d other; want %d and %d", len(got), got[otherUnknown], maxUnknown+1, 2*(101-maxUnknown))
		}
		for name := range got {
			if len(name) > 83 {
				t.Errorf("name of %d bytes kept", len(name))
			}
		}
	})
	t.Run("long name", func(t *testing.T) {
		b := newBuilder(t, schemas.Users, Policy{Mode: PIIKeep})
		long := strings.Repeat("n", 200)
		if err := b.Append(decode(t, `{"`+long+`": 1}`), Context{}); err != nil {
			t.Fatal(err)
		}
		if got := b.UnknownFields(); got[long[:80]+"..."] != 1 || len(got) != 1 {
			t.Errorf("unknown fields = %v", got)
		}
	})
}

// TestDerivedColumns: the columns convsync supplies come from the Context,
// and a column may take its value from a field that feeds another.
func TestDerivedColumns(t *testing.T) {
	t.Run("services", func(t *testing.T) {
		b := newBuilder(t, schemas.Services, Policy{Mode: PIIKeep})
		// A services row has no service to be read from: its
		// chat_service_sid is its own sid.
		if err := b.Append(decode(t, `{"sid": "IS9", "friendly_name": "S", "chat_service_sid": "ISforged"}`), Context{RunID: "r"}); err != nil {
			t.Fatal(err)
		}
		checkCells(t, record(t, b), 0, map[string]any{"sid": "IS9", "chat_service_sid": "IS9", "run_id": "r", "friendly_name": "S"})
		// services' chat_service_sid is read from sid, not supplied by
		// convsync: an API field of that name is not the table's.
		if u := b.UnknownFields(); len(u) != 1 || u["chat_service_sid"] != 1 {
			t.Errorf("unknown fields = %v", u)
		}
	})
	t.Run("empty context", func(t *testing.T) {
		b := newBuilder(t, schemas.ParticipantConversations, Policy{Mode: PIIKeep})
		if err := b.Append(decode(t, `{"subject": "forged", "subject_kind": "forged", "conversation_sid": "CH1"}`), Context{}); err != nil {
			t.Fatal(err)
		}
		checkCells(t, record(t, b), 0, map[string]any{"subject": nil, "subject_kind": nil, "chat_service_sid": nil, "run_id": nil, "conversation_sid": "CH1"})
		if u := b.UnknownFields(); len(u) != 0 {
			t.Errorf("unknown fields = %v", u)
		}
	})
}

// TestBatches: rows accumulate until NewRecord, which starts a new batch;
// Bytes estimates the batch's size.
func TestBatches(t *testing.T) {
	b := newBuilder(t, schemas.Users, Policy{Mode: PIIKeep})
	for batch := range 3 {
		for i := range 50 {
			if err := b.Append(decode(t, fmt.Sprintf(`{"sid": "US%d-%d", "identity": "%s"}`, batch, i, strings.Repeat("x", 100))), Context{RunID: "r"}); err != nil {
				t.Fatal(err)
			}
		}
		if b.Len() != 50 || b.Bytes() < 50*100 {
			t.Errorf("batch %d: Len = %d, Bytes = %d", batch, b.Len(), b.Bytes())
		}
		rec := record(t, b)
		if rec.NumRows() != 50 {
			t.Fatalf("batch %d: %d rows", batch, rec.NumRows())
		}
		checkCells(t, rec, 49, map[string]any{"sid": fmt.Sprintf("US%d-49", batch)})
	}
}

// TestAppendDoesNotKeepTheObject: a row holds its own copy of the values,
// so the page the object came from may be released (its parser reused)
// right after Append.
func TestAppendDoesNotKeepTheObject(t *testing.T) {
	b := newBuilder(t, schemas.Users, Policy{Mode: PIIKeep})
	var p fastjson.Parser
	for _, id := range []string{"alice", "bob"} {
		v, err := p.Parse(`{"sid": "US-` + id + `", "identity": "` + id + `", "attributes": {"x": "` + id + `"}}`)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Append(v, Context{}); err != nil {
			t.Fatal(err)
		}
	}
	// The parser's buffer now holds something else entirely.
	if _, err := p.Parse(`{"sid": "XXXXXXXXXX", "identity": "XXXXXXXXXXXXXXXX", "attributes": "XXXXXXXXXXXXXXXXXXXXX"}`); err != nil {
		t.Fatal(err)
	}
	rec := record(t, b)
	checkCells(t, rec, 0, map[string]any{"sid": "US-alice", "identity": "alice", "attributes": `{"x":"alice"}`})
	checkCells(t, rec, 1, map[string]any{"sid": "US-bob", "identity": "bob", "attributes": `{"x":"bob"}`})
}

func TestParseTime(t *testing.T) {
	for _, s := range []string{"", "yesterday", "2020-13-01T00:00:00Z", "2020-01-01", "1700000000"} {
		if _, err := ParseTime(s); err == nil {
			t.Errorf("ParseTime(%q): no error", s)
		}
	}
	got, err := ParseTime("2020-01-01T01:00:00+01:00")
	if err != nil || !got.Equal(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("ParseTime = %v, %v", got, err)
	}
}

// TestEveryTable: a builder works for every table, and an empty object
// makes a row of NULLs but for the values convsync supplies.
func TestEveryTable(t *testing.T) {
	for _, tab := range schemas.All {
		t.Run(tab.Name, func(t *testing.T) {
			b := newBuilder(t, tab, Policy{Mode: PIIHash, Key: []byte("k")})
			if err := b.Append(decode(t, `{}`), Context{RunID: "r"}); err != nil {
				t.Fatal(err)
			}
			rec := record(t, b)
			if rec.NumRows() != 1 || rec.NumCols() != int64(len(tab.Schema.Fields())) || !rec.Schema().Equal(tab.Schema) {
				t.Fatalf("record: %d rows, %d columns, schema %v", rec.NumRows(), rec.NumCols(), rec.Schema())
			}
			for i, f := range tab.Schema.Fields() {
				if null := rec.Column(i).IsNull(0); null != (f.Name != "run_id") {
					t.Errorf("%s: null = %v", f.Name, null)
				}
			}
		})
	}
}
