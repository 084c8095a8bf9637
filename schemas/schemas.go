// Package schemas declares the tables convsync writes, one Arrow schema per
// table, as plain data.
//
// Facts about a column live in its Arrow field metadata, under namespaced
// keys, and everything downstream (the JSON decoder in transform, the PII
// policy, DuckDB column comments, the docs) reads them from there:
//
//   - MetaSource: where the value comes from, a dotted path into the API
//     object ("messaging_binding.address"), or a Derived* name for values
//     convsync supplies itself (the service the row was read from, the run).
//   - MetaPII: "standard" or "sensitive", as the spec's x-twilio.pii marks
//     the field, or as convsync marks identity-bearing fields the spec does
//     not tag (MetaPIIOrigin tells which).
//   - MetaKey: "true" on the columns of the table's key.
//   - MetaHistory: on the columns of a table whose history convsync keeps
//     (--history): "track" on the columns whose change starts a new
//     stretch, "carry" on the columns the history rows carry along.
package schemas

import (
	"fmt"

	"github.com/apache/arrow/go/v17/arrow"
)

// Metadata keys carried by every field.
const (
	MetaSource    = "convsync.source"
	MetaPII       = "convsync.pii"
	MetaPIIOrigin = "convsync.pii_origin"
	MetaKey       = "convsync.key"
	MetaComment   = "convsync.comment"
	// MetaJSON is "true" on columns that hold free-form JSON as text (an
	// object sent where the spec has a string is kept as its JSON text).
	MetaJSON = "convsync.json"
	// MetaHistory is "track" or "carry" on the columns of a table's history
	// (see Table.History).
	MetaHistory = "convsync.history"
)

// Values of MetaHistory.
const (
	HistoryTrack = "track"
	HistoryCarry = "carry"
)

// PII classes, as Twilio's spec names them.
const (
	PIIStandard  = "standard"
	PIISensitive = "sensitive"
)

// Where a PII tag comes from.
const (
	OriginSpec     = "spec"     // the field carries x-twilio.pii in the spec
	OriginConvsync = "convsync" // convsync tags it (created_by holds an identity)
)

// Sources that are not fields of the API object.
const (
	// DerivedService is the SID of the service the row was read from.
	DerivedService = "$service"
	// DerivedRun is the ID of the run that wrote the row.
	DerivedRun = "$run"
	// DerivedSubjectKind is "identity" or "address": how a lookup subject was given.
	DerivedSubjectKind = "$subject_kind"
	// DerivedSubject is the identity or address that was looked up.
	DerivedSubject = "$subject"
)

// Table is one output table: its name (also the Parquet dataset folder)
// and its Arrow schema, whose field metadata says everything else.
type Table struct {
	Name   string
	Schema *arrow.Schema
	// APIKind names the spec schema the rows come from
	// (conversations.v1.service.service_user, ...).
	APIKind string
}

// Timestamp is the Arrow type of every date-time column: microseconds, UTC.
var Timestamp = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

type col struct {
	name, source string
	typ          arrow.DataType
	pii, origin  string
	key, json    bool
	comment      string
	history      string
}

func str(name string) col   { return col{name: name, source: name, typ: arrow.BinaryTypes.String} }
func i64(name string) col   { return col{name: name, source: name, typ: arrow.PrimitiveTypes.Int64} }
func boolc(name string) col { return col{name: name, source: name, typ: arrow.FixedWidthTypes.Boolean} }
func ts(name string) col    { return col{name: name, source: name, typ: Timestamp} }

func (c col) from(source string) col { c.source = source; return c }
func (c col) std() col               { c.pii, c.origin = PIIStandard, OriginSpec; return c }
func (c col) sensitive() col         { c.pii, c.origin = PIISensitive, OriginSpec; return c }
func (c col) identityBearing() col {
	c.pii, c.origin = PIIStandard, OriginConvsync
	c.comment = "identity of the creator: not tagged by the spec, treated as PII by convsync"
	return c
}
func (c col) isKey() col           { c.key = true; return c }
func (c col) note(text string) col { c.comment = text; return c }
func (c col) jsonText() col        { c.json = true; return c }
func (c col) tracked() col         { c.history = HistoryTrack; return c }
func (c col) carried() col         { c.history = HistoryCarry; return c }

// binding flattens a messaging_binding object found at source into six
// columns named prefix_type ... prefix_level. The spec tags the whole object
// standard; type and level are not personal, the address fields and name are.
func binding(prefix, source string) []col {
	return []col{
		str(prefix + "_type").from(source + ".type"),
		str(prefix + "_address").from(source + ".address").std(),
		str(prefix + "_proxy_address").from(source + ".proxy_address").std(),
		str(prefix + "_projected_address").from(source + ".projected_address").std(),
		str(prefix + "_name").from(source + ".name").std(),
		str(prefix + "_level").from(source + ".level"),
	}
}

// tracking marks every column of cs as tracked by the table's history.
func tracking(cs []col) []col {
	out := make([]col, len(cs))
	for i, c := range cs {
		out[i] = c.tracked()
	}
	return out
}

// timers flattens a timers object into prefix_date_inactive and prefix_date_closed.
func timers(prefix, source string) []col {
	return []col{
		ts(prefix + "_date_inactive").from(source + ".date_inactive"),
		ts(prefix + "_date_closed").from(source + ".date_closed"),
	}
}

func runCol() col {
	return str("run_id").from(DerivedRun).note("the convsync run that wrote this row (see the runs table)")
}

func serviceCol() col {
	return str("chat_service_sid").from(DerivedService).note("the Conversation Service the row was read from")
}

func cols(parts ...any) []col {
	var out []col
	for _, p := range parts {
		switch v := p.(type) {
		case col:
			out = append(out, v)
		case []col:
			out = append(out, v...)
		default:
			panic(fmt.Sprintf("schemas: unexpected %T", p))
		}
	}
	return out
}

func table(name, apiKind string, cs []col) Table {
	fields := make([]arrow.Field, len(cs))
	for i, c := range cs {
		keys := []string{MetaSource}
		vals := []string{c.source}
		if c.pii != "" {
			keys = append(keys, MetaPII, MetaPIIOrigin)
			vals = append(vals, c.pii, c.origin)
		}
		if c.key {
			keys = append(keys, MetaKey)
			vals = append(vals, "true")
		}
		if c.json {
			keys = append(keys, MetaJSON)
			vals = append(vals, "true")
		}
		if c.comment != "" {
			keys = append(keys, MetaComment)
			vals = append(vals, c.comment)
		}
		if c.history != "" {
			keys = append(keys, MetaHistory)
			vals = append(vals, c.history)
		}
		fields[i] = arrow.Field{Name: c.name, Type: c.typ, Nullable: true, Metadata: arrow.NewMetadata(keys, vals)}
	}
	return Table{Name: name, Schema: arrow.NewSchema(fields, nil), APIKind: apiKind}
}

// Key returns the names of the table's key columns (MetaKey), in order.
func (t Table) Key() []string {
	var out []string
	for _, f := range t.Schema.Fields() {
		if Meta(f, MetaKey) == "true" {
			out = append(out, f.Name)
		}
	}
	return out
}

// KeySources returns the source fields of the table's key columns: the
// fields of an API object that identify it.
func (t Table) KeySources() []string {
	var out []string
	for _, f := range t.Schema.Fields() {
		if Meta(f, MetaKey) == "true" {
			out = append(out, Meta(f, MetaSource))
		}
	}
	return out
}

// History returns the columns of the table's history: those whose change
// starts a new stretch (tracked) and those it carries along (carried).
// Both are empty for a table without a history.
func (t Table) History() (tracked, carried []string) {
	for _, f := range t.Schema.Fields() {
		switch Meta(f, MetaHistory) {
		case HistoryTrack:
			tracked = append(tracked, f.Name)
		case HistoryCarry:
			carried = append(carried, f.Name)
		}
	}
	return tracked, carried
}

// HistoryName is the name of the table's history table ("" without one).
func (t Table) HistoryName() string {
	if tracked, _ := t.History(); len(tracked) == 0 {
		return ""
	}
	return t.Name + "_history"
}

// Services: one row per Conversation Service (GET /v1/Services).
var Services = table("services", "conversations.v1.service", cols(
	str("account_sid"),
	str("sid").isKey(),
	str("chat_service_sid").from("sid").note("the service's own sid"),
	str("friendly_name").std(),
	ts("date_created"),
	ts("date_updated"),
	str("url"),
	runCol(),
))

// Users: one row per user of a service (GET /v1/Services/{IS}/Users).
var Users = table("users", "conversations.v1.service.service_user", cols(
	str("sid").isKey(),
	str("account_sid"),
	serviceCol(),
	str("role_sid"),
	str("identity").std(),
	str("friendly_name").std(),
	str("attributes").sensitive().jsonText(),
	boolc("is_online"),
	boolc("is_notifiable"),
	ts("date_created"),
	ts("date_updated"),
	str("url"),
	runCol(),
))

// UserConversations: one row per user's membership
// (GET /v1/Services/{IS}/Users/{US}/Conversations).
var UserConversations = table("user_conversations", "conversations.v1.service.service_user.service_user_conversation", cols(
	str("account_sid"),
	serviceCol(),
	str("conversation_sid").isKey(),
	i64("unread_messages_count"),
	i64("last_read_message_index"),
	str("participant_sid"),
	str("user_sid").isKey(),
	str("friendly_name").std(),
	str("conversation_state"),
	timers("timers", "timers"),
	str("attributes").sensitive().jsonText(),
	ts("date_created"),
	ts("date_updated"),
	str("created_by").identityBearing(),
	str("notification_level"),
	str("unique_name").std(),
	str("url"),
	runCol(),
))

// Conversations: one row per conversation (GET /v1/Services/{IS}/Conversations).
var Conversations = table("conversations", "conversations.v1.service.service_conversation", cols(
	str("account_sid"),
	serviceCol(),
	str("messaging_service_sid"),
	str("sid").isKey(),
	str("friendly_name").std(),
	str("unique_name").std(),
	str("attributes").sensitive().jsonText(),
	str("state"),
	ts("date_created"),
	ts("date_updated"),
	timers("timers", "timers"),
	str("url"),
	str("bindings").jsonText().note("JSON text"),
	runCol(),
))

// Participants: one row per participant of a conversation
// (GET /v1/Services/{IS}/Conversations/{CH}/Participants).
var Participants = table("participants", "conversations.v1.service.service_conversation.service_conversation_participant", cols(
	str("account_sid"),
	serviceCol().carried(),
	str("conversation_sid").carried(),
	str("sid").isKey(),
	str("identity").std().tracked(),
	str("attributes").sensitive().jsonText(),
	tracking(binding("messaging_binding", "messaging_binding")),
	str("role_sid").tracked(),
	ts("date_created"),
	ts("date_updated"),
	str("url"),
	i64("last_read_message_index"),
	ts("last_read_timestamp"),
	runCol(),
))

// ParticipantConversations: one row per lookup result
// (GET /v1/Services/{IS}/ParticipantConversations), with the subject that
// was looked up.
var ParticipantConversations = table("participant_conversations", "conversations.v1.service.service_participant_conversation", cols(
	str("subject_kind").from(DerivedSubjectKind).note("identity or address: how the subject was given"),
	str("subject").from(DerivedSubject).std().isKey().note("the identity or address that was looked up"),
	str("account_sid"),
	serviceCol(),
	str("participant_sid").isKey(),
	str("participant_user_sid"),
	str("participant_identity").std(),
	binding("participant_messaging_binding", "participant_messaging_binding"),
	str("conversation_sid").isKey(),
	str("conversation_unique_name").std(),
	str("conversation_friendly_name").std(),
	str("conversation_attributes").sensitive().jsonText(),
	ts("conversation_date_created"),
	ts("conversation_date_updated"),
	str("conversation_created_by").identityBearing(),
	str("conversation_state"),
	timers("conversation_timers", "conversation_timers"),
	runCol(),
))

// All lists every table convsync writes: the export's, parents first,
// then the lookup's. Export and Lookup are its two parts.
var All = []Table{Services, Users, UserConversations, Conversations, Participants, ParticipantConversations}

// Export lists the tables `convsync export` writes, parents first.
var Export = All[:5:5]

// Lookup lists the tables `convsync lookup` writes.
var Lookup = All[5:]

// ByName returns the table called name.
func ByName(name string) (Table, bool) {
	for _, t := range All {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// Meta returns the value of metadata key k on field f ("" when absent).
func Meta(f arrow.Field, k string) string {
	if i := f.Metadata.FindKey(k); i >= 0 {
		return f.Metadata.Values()[i]
	}
	return ""
}
