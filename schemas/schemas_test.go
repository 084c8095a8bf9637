package schemas_test

import (
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/convsync/convsync/internal/oaispec"
	"github.com/convsync/convsync/schemas"
)

func loadSpec(t *testing.T) *oaispec.Spec {
	t.Helper()
	s, err := oaispec.Load()
	if err != nil {
		oaispec.SkipOrFail(t, err)
	}
	return s
}

// nested objects the spec leaves untyped, and the fields convsync flattens
// out of them.
var nestedFields = map[string][]string{
	"messaging_binding":             {"type", "address", "proxy_address", "projected_address", "name", "level"},
	"participant_messaging_binding": {"type", "address", "proxy_address", "projected_address", "name", "level"},
	"timers":                        {"date_inactive", "date_closed"},
	"conversation_timers":           {"date_inactive", "date_closed"},
}

// notPersonal are flattened binding fields that carry no personal data,
// although the spec tags the binding object as a whole.
var notPersonal = map[string]bool{"type": true, "level": true}

// TestColumnsMatchSpec cross-checks every column of every table, its type
// and its PII tag, against Twilio's OpenAPI spec, so drift is caught.
func TestColumnsMatchSpec(t *testing.T) {
	spec := loadSpec(t)
	for _, tab := range schemas.All {
		t.Run(tab.Name, func(t *testing.T) {
			obj, err := spec.Component(tab.APIKind)
			if err != nil {
				t.Fatal(err)
			}
			covered := map[string]bool{}
			for _, f := range tab.Schema.Fields() {
				src := schemas.Meta(f, schemas.MetaSource)
				if strings.HasPrefix(src, "$") {
					covered[f.Name] = src == schemas.DerivedService // filled from the service read
					continue                                        // convsync's own column
				}
				path := strings.Split(src, ".")
				prop, ok := obj.Properties[path[0]]
				if !ok {
					t.Errorf("column %s: spec %s has no field %s", f.Name, tab.APIKind, path[0])
					continue
				}
				covered[path[0]] = true
				prop, err := spec.Resolve(prop)
				if err != nil {
					t.Fatal(err)
				}
				wantPII := prop.PII()
				if len(path) == 2 {
					if !contains(nestedFields[path[0]], path[1]) {
						t.Errorf("column %s: %s is not a known field of %s", f.Name, path[1], path[0])
					}
					if notPersonal[path[1]] {
						wantPII = ""
					}
				} else {
					checkType(t, f, prop)
				}
				gotPII := schemas.Meta(f, schemas.MetaPII)
				origin := schemas.Meta(f, schemas.MetaPIIOrigin)
				switch {
				case origin == schemas.OriginConvsync:
					if wantPII != "" || !strings.HasSuffix(f.Name, "created_by") {
						t.Errorf("column %s: convsync's own PII tag on a column the spec tags %q", f.Name, wantPII)
					}
				case gotPII != wantPII:
					t.Errorf("column %s: pii tag %q, spec says %q", f.Name, gotPII, wantPII)
				}
			}
			for name := range obj.Properties {
				if name != "links" && !covered[name] {
					t.Errorf("spec field %s of %s has no column", name, tab.APIKind)
				}
			}
			if len(tab.Key()) == 0 {
				t.Errorf("table %s has no key", tab.Name)
			}
			if f, ok := tab.Schema.FieldsByName("chat_service_sid"); !ok || len(f) != 1 {
				t.Errorf("table %s has no chat_service_sid column", tab.Name)
			}
			if _, ok := tab.Schema.FieldsByName("run_id"); !ok {
				t.Errorf("table %s has no run_id column", tab.Name)
			}
		})
	}
}

func checkType(t *testing.T, f arrow.Field, prop *oaispec.Schema) {
	t.Helper()
	var want arrow.Type
	switch {
	case prop.Type == "integer":
		want = arrow.INT64
	case prop.Type == "boolean":
		want = arrow.BOOL
	case prop.Format == "date-time" || f.Name == "last_read_timestamp":
		want = arrow.TIMESTAMP
	case prop.Type == "string", len(prop.Enum) > 0:
		want = arrow.STRING
	case prop.Type == "" && schemas.Meta(f, schemas.MetaJSON) == "true":
		want = arrow.STRING // free-form JSON kept as text
	default:
		t.Errorf("column %s: no mapping for spec type %q format %q", f.Name, prop.Type, prop.Format)
		return
	}
	if f.Type.ID() != want {
		t.Errorf("column %s: arrow type %s, spec type %q format %q wants %s", f.Name, f.Type, prop.Type, prop.Format, want)
	}
	if want == arrow.TIMESTAMP && f.Type.(*arrow.TimestampType).TimeZone != "UTC" {
		t.Errorf("column %s: timestamps must be UTC", f.Name)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func TestKeysAndNamesUnique(t *testing.T) {
	for _, tab := range schemas.All {
		seen := map[string]bool{}
		for _, f := range tab.Schema.Fields() {
			if seen[f.Name] {
				t.Errorf("%s: duplicate column %s", tab.Name, f.Name)
			}
			seen[f.Name] = true
		}
		for _, k := range tab.Key() {
			if !seen[k] {
				t.Errorf("%s: key column %s missing", tab.Name, k)
			}
		}
		if got, ok := schemas.ByName(tab.Name); !ok || got.Name != tab.Name {
			t.Errorf("ByName(%s) = %v, %v", tab.Name, got.Name, ok)
		}
	}
}

// TestAllIsExportThenLookup: All lists every table once, the export's
// (parents first) then the lookup's.
func TestAllIsExportThenLookup(t *testing.T) {
	var names []string
	for _, tab := range schemas.All {
		names = append(names, tab.Name)
	}
	want := "services users user_conversations conversations participants participant_conversations"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("All = %s, want %s", got, want)
	}
	if len(schemas.Export)+len(schemas.Lookup) != len(schemas.All) {
		t.Errorf("Export (%d) and Lookup (%d) do not make All (%d)", len(schemas.Export), len(schemas.Lookup), len(schemas.All))
	}
	for i, tab := range append(append([]schemas.Table{}, schemas.Export...), schemas.Lookup...) {
		if tab.Name != schemas.All[i].Name {
			t.Errorf("table %d: %s, All has %s", i, tab.Name, schemas.All[i].Name)
		}
	}
	if _, ok := schemas.ByName("messages"); ok {
		t.Error("ByName found a table that does not exist")
	}
}

// TestKeys: each table's key, from the MetaKey metadata, in column order,
// with the source fields that identify an API object. A lookup row is
// keyed by the subject looked up too: the same participant and
// conversation found for two subjects are two rows.
func TestKeys(t *testing.T) {
	cases := []struct {
		tab     schemas.Table
		key     string
		sources string
	}{
		{schemas.Services, "sid", "sid"},
		{schemas.Users, "sid", "sid"},
		{schemas.UserConversations, "conversation_sid user_sid", "conversation_sid user_sid"},
		{schemas.Conversations, "sid", "sid"},
		{schemas.Participants, "sid", "sid"},
		{schemas.ParticipantConversations, "subject participant_sid conversation_sid", schemas.DerivedSubject + " participant_sid conversation_sid"},
	}
	for _, tc := range cases {
		t.Run(tc.tab.Name, func(t *testing.T) {
			if got := strings.Join(tc.tab.Key(), " "); got != tc.key {
				t.Errorf("Key = %s, want %s", got, tc.key)
			}
			if got := strings.Join(tc.tab.KeySources(), " "); got != tc.sources {
				t.Errorf("KeySources = %s, want %s", got, tc.sources)
			}
			// The key is what MetaKey marks, and nothing else.
			n := 0
			for _, f := range tc.tab.Schema.Fields() {
				switch v := schemas.Meta(f, schemas.MetaKey); v {
				case "true":
					n++
				case "":
				default:
					t.Errorf("%s: MetaKey %q", f.Name, v)
				}
			}
			if n != len(tc.tab.Key()) {
				t.Errorf("%d key columns marked, Key has %d", n, len(tc.tab.Key()))
			}
		})
	}
}

// TestHistory: only participants keep a history: their identity, binding
// and role start a new stretch when they change; the service and the
// conversation are carried along.
func TestHistory(t *testing.T) {
	for _, tab := range schemas.All {
		tracked, carried := tab.History()
		if tab.Name != "participants" {
			if len(tracked) != 0 || len(carried) != 0 || tab.HistoryName() != "" {
				t.Errorf("%s: history %v, %v, %q; want none", tab.Name, tracked, carried, tab.HistoryName())
			}
			continue
		}
		wantTracked := "identity messaging_binding_type messaging_binding_address messaging_binding_proxy_address messaging_binding_projected_address messaging_binding_name messaging_binding_level role_sid"
		if got := strings.Join(tracked, " "); got != wantTracked {
			t.Errorf("tracked = %s, want %s", got, wantTracked)
		}
		if got := strings.Join(carried, " "); got != "chat_service_sid conversation_sid" {
			t.Errorf("carried = %s", got)
		}
		if got := tab.HistoryName(); got != "participants_history" {
			t.Errorf("HistoryName = %q", got)
		}
		// A key column is neither tracked nor carried: it names the row
		// the history is of.
		for _, k := range tab.Key() {
			if contains(tracked, k) || contains(carried, k) {
				t.Errorf("key column %s is in the history's columns", k)
			}
		}
		for _, f := range tab.Schema.Fields() {
			switch v := schemas.Meta(f, schemas.MetaHistory); v {
			case "", schemas.HistoryTrack, schemas.HistoryCarry:
			default:
				t.Errorf("%s: MetaHistory %q", f.Name, v)
			}
		}
	}
}
