package transform

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/convsync/convsync/schemas"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// cell returns row 0 of the named column as a Go value (nil for NULL).
func cell(t *testing.T, rec arrow.Record, name string) any {
	t.Helper()
	idx := rec.Schema().FieldIndices(name)
	if len(idx) != 1 {
		t.Fatalf("no column %s", name)
	}
	col := rec.Column(idx[0])
	if col.IsNull(0) {
		return nil
	}
	switch a := col.(type) {
	case *array.String:
		return a.Value(0)
	case *array.Int64:
		return a.Value(0)
	case *array.Boolean:
		return a.Value(0)
	case *array.Timestamp:
		return a.Value(0).ToTime(arrow.Microsecond).UTC()
	}
	t.Fatalf("unexpected array %T", col)
	return nil
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
  "last_read_timestamp": "2023-01-02T03:04:05.123456Z"
}`

func TestAppendFlattensAndConverts(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)

	b := NewBuilder(mem, schemas.Participants, Policy{Mode: PIIKeep})
	defer b.Release()
	if err := b.Append(decode(t, participantJSON), Context{ServiceSID: "ISbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", RunID: "run-1"}); err != nil {
		t.Fatal(err)
	}
	rec := b.NewRecord()
	defer rec.Release()

	want := map[string]any{
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
		"date_created":                        time.Date(2016, 3, 24, 21, 5, 50, 0, time.UTC),
		"date_updated":                        time.Date(2016, 3, 24, 21, 5, 50, 0, time.UTC),
		"last_read_message_index":             int64(7),
		"last_read_timestamp":                 time.Date(2023, 1, 2, 3, 4, 5, 123456000, time.UTC),
		"run_id":                              "run-1",
	}
	if rec.NumRows() != 1 {
		t.Fatalf("rows = %d", rec.NumRows())
	}
	for name, w := range want {
		got := cell(t, rec, name)
		if gt, ok := got.(time.Time); ok {
			if !gt.Equal(w.(time.Time)) {
				t.Errorf("%s = %v, want %v", name, got, w)
			}
			continue
		}
		if got != w {
			t.Errorf("%s = %#v, want %#v", name, got, w)
		}
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			b := NewBuilder(mem, schemas.Conversations, Policy{Mode: PIIKeep})
			defer b.Release()
			obj := decode(t, `{"sid": "CHaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "state": "active", "bindings": {"sms": {"address": "x"}}, "timers": `+tc.timers+`}`)
			if err := b.Append(obj, Context{}); err != nil {
				t.Fatal(err)
			}
			rec := b.NewRecord()
			defer rec.Release()
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
		})
	}
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
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			p := Policy{Mode: tc.mode, Key: key}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			b := NewBuilder(mem, schemas.Participants, p)
			defer b.Release()
			if err := b.Append(decode(t, participantJSON), Context{}); err != nil {
				t.Fatal(err)
			}
			rec := b.NewRecord()
			defer rec.Release()
			for col, w := range tc.want {
				if got := cell(t, rec, col); got != w {
					t.Errorf("%s = %#v, want %#v", col, got, w)
				}
			}
			// Columns that are not personal stay as they are in every mode.
			for col, w := range map[string]any{"messaging_binding_type": "sms", "messaging_binding_level": "participant", "sid": "MBaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"} {
				if got := cell(t, rec, col); got != w {
					t.Errorf("%s = %#v, want %#v", col, got, w)
				}
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	cases := []struct {
		p       Policy
		wantErr string
	}{
		{Policy{Mode: PIIKeep}, ""},
		{Policy{Mode: PIIRedact}, ""},
		{Policy{Mode: PIIHash, Key: []byte("x")}, ""},
		{Policy{Mode: PIIHash}, PIIKeyEnv},
		{Policy{Mode: "scramble"}, "unknown --pii mode"},
	}
	for _, tc := range cases {
		err := tc.p.Validate()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: err = %v, want %q", tc.p, err, tc.wantErr)
		}
	}
}

func TestAppendErrorsNameColumnNotValue(t *testing.T) {
	cases := []struct{ name, obj, wantCol string }{
		{"bad timestamp", `{"sid": "MB1", "identity": "secret-person", "date_created": "yesterday"}`, "participants.date_created"},
		{"bad int", `{"sid": "MB1", "identity": "secret-person", "last_read_message_index": "seven"}`, "participants.last_read_message_index"},
		{"bad string", `{"sid": "MB1", "identity": ["secret-person"]}`, "participants.identity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			b := NewBuilder(mem, schemas.Participants, Policy{Mode: PIIKeep})
			defer b.Release()
			err := b.Append(decode(t, tc.obj), Context{})
			if err == nil || !strings.Contains(err.Error(), tc.wantCol) {
				t.Fatalf("err = %v, want mention of %s", err, tc.wantCol)
			}
			if strings.Contains(err.Error(), "secret-person") {
				t.Errorf("error reveals a PII value: %v", err)
			}
			if b.Len() != 0 {
				t.Errorf("a failed Append left %d rows", b.Len())
			}
			rec := b.NewRecord()
			defer rec.Release()
			if rec.NumRows() != 0 {
				t.Errorf("record has %d rows after failed Append", rec.NumRows())
			}
		})
	}
}

func TestHashIsStableAcrossBuilders(t *testing.T) {
	p := Policy{Mode: PIIHash, Key: []byte("same key")}
	var got []string
	for _, tab := range []schemas.Table{schemas.Users, schemas.Participants} {
		b := NewBuilder(memory.DefaultAllocator, tab, p)
		if err := b.Append(map[string]any{"identity": "zoë+1@example.com"}, Context{}); err != nil {
			t.Fatal(err)
		}
		rec := b.NewRecord()
		got = append(got, cell(t, rec, "identity").(string))
		rec.Release()
		b.Release()
	}
	if got[0] != got[1] || got[0] != p.Hash("zoë+1@example.com") || bytes.ContainsAny([]byte(got[0]), "ABCDEF") {
		t.Errorf("hashes differ or are not lowercase hex HMAC: %v", got)
	}
}

// TestLenientValues: values a real account or a proxy may send in a looser
// form than the spec's still land typed.
func TestLenientValues(t *testing.T) {
	cases := []struct {
		name, obj, col string
		want           any
	}{
		{"timestamp with a space", `{"date_created": "2020-05-06 07:08:09Z"}`, "date_created", time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)},
		{"timestamp without zone", `{"date_created": "2020-05-06T07:08:09.5"}`, "date_created", time.Date(2020, 5, 6, 7, 8, 9, 5e8, time.UTC)},
		{"timestamp with offset", `{"date_created": "2020-05-06T09:08:09+02:00"}`, "date_created", time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)},
		{"integer as string", `{"unread_messages_count": "12"}`, "unread_messages_count", int64(12)},
		{"attributes as an object", `{"attributes": {"a": [1, "x"]}}`, "attributes", `{"a":[1,"x"]}`},
		{"empty timestamp", `{"date_created": ""}`, "date_created", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBuilder(memory.DefaultAllocator, schemas.UserConversations, Policy{Mode: PIIKeep})
			defer b.Release()
			if err := b.Append(decode(t, tc.obj), Context{}); err != nil {
				t.Fatal(err)
			}
			rec := b.NewRecord()
			defer rec.Release()
			got := cell(t, rec, tc.col)
			if gt, ok := got.(time.Time); ok {
				if !gt.Equal(tc.want.(time.Time)) {
					t.Errorf("%s = %v, want %v", tc.col, got, tc.want)
				}
			} else if got != tc.want {
				t.Errorf("%s = %#v, want %#v", tc.col, got, tc.want)
			}
		})
	}
	b := NewBuilder(memory.DefaultAllocator, schemas.Users, Policy{Mode: PIIKeep})
	defer b.Release()
	if err := b.Append(decode(t, `{"is_online": "true"}`), Context{}); err != nil {
		t.Fatal(err)
	}
	rec := b.NewRecord()
	defer rec.Release()
	if got := cell(t, rec, "is_online"); got != true {
		t.Errorf("is_online = %v", got)
	}
}
