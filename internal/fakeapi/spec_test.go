package fakeapi

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// schemaValidator checks decoded JSON (json.Number numbers) against OpenAPI
// 3 schemas of the Twilio spec: exact property sets, types, nullability,
// enums ($ref resolved), pattern, min/maxLength, date-time and uri formats.
type schemaValidator struct {
	spec    map[string]any
	base    string // every uri must start with it
	errs    []string
	regexps map[string]*regexp.Regexp
}

func (v *schemaValidator) fail(path, format string, args ...any) {
	if len(v.errs) < 50 {
		v.errs = append(v.errs, path+": "+fmt.Sprintf(format, args...))
	}
}

func (v *schemaValidator) resolve(s map[string]any) map[string]any {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		s = v.spec["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any)
	}
}

func (v *schemaValidator) checkURI(path, s string) {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		v.fail(path, "not an absolute uri: %q", s)
		return
	}
	if !strings.HasPrefix(s, v.base+"/") {
		v.fail(path, "uri %q not on server %s", s, v.base)
	}
}

func num(x any) int {
	n, _ := x.(json.Number).Int64()
	return int(n)
}

func (v *schemaValidator) check(path string, schema map[string]any, val any) {
	s := v.resolve(schema)
	if val == nil {
		if s["nullable"] != true {
			v.fail(path, "null but not nullable")
		}
		return
	}
	switch typ, _ := s["type"].(string); typ {
	case "string":
		str, ok := val.(string)
		if !ok {
			v.fail(path, "want string, got %T", val)
			return
		}
		if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, any(str)) {
			v.fail(path, "%q not in enum %v", str, enum)
		}
		if m, ok := s["minLength"]; ok && utf8.RuneCountInString(str) < num(m) {
			v.fail(path, "%q shorter than %v", str, m)
		}
		if m, ok := s["maxLength"]; ok && utf8.RuneCountInString(str) > num(m) {
			v.fail(path, "%q longer than %v", str, m)
		}
		if p, ok := s["pattern"].(string); ok {
			re := v.regexps[p]
			if re == nil {
				re = regexp.MustCompile(p)
				v.regexps[p] = re
			}
			if !re.MatchString(str) {
				v.fail(path, "%q does not match %s", str, p)
			}
		}
		switch s["format"] {
		case "date-time":
			if _, err := time.Parse(time.RFC3339, str); err != nil {
				v.fail(path, "bad date-time %q", str)
			}
		case "uri":
			v.checkURI(path, str)
		}
	case "integer":
		n, ok := val.(json.Number)
		if !ok {
			v.fail(path, "want integer, got %T", val)
			return
		}
		if _, err := n.Int64(); err != nil {
			v.fail(path, "not an integer: %s", n)
		}
	case "boolean":
		if _, ok := val.(bool); !ok {
			v.fail(path, "want boolean, got %T", val)
		}
	case "array":
		arr, ok := val.([]any)
		if !ok {
			v.fail(path, "want array, got %T", val)
			return
		}
		items, _ := s["items"].(map[string]any)
		for i, it := range arr {
			v.check(fmt.Sprintf("%s[%d]", path, i), items, it)
		}
	case "object":
		m, ok := val.(map[string]any)
		if !ok {
			v.fail(path, "want object, got %T", val)
			return
		}
		if props, ok := s["properties"].(map[string]any); ok {
			for name, ps := range props {
				pv, present := m[name]
				if !present {
					v.fail(path, "missing field %q", name)
					continue
				}
				v.check(path+"."+name, ps.(map[string]any), pv)
			}
			for name := range m {
				if _, ok := props[name]; !ok {
					v.fail(path, "extra field %q", name)
				}
			}
		}
		if s["format"] == "uri-map" {
			for k, lv := range m {
				if str, ok := lv.(string); ok {
					v.checkURI(path+"."+k, str)
				} else {
					v.fail(path+"."+k, "link is not a string")
				}
			}
		}
	case "":
		// Untyped in the spec (timers, bindings, messaging_binding):
		// checked semantically by checkLoose.
		v.checkLoose(path, val)
	}
}

// checkLoose validates the shapes the spec leaves untyped, following its
// examples.
func (v *schemaValidator) checkLoose(path string, val any) {
	field := path[strings.LastIndex(path, ".")+1:]
	m, ok := val.(map[string]any)
	if !ok {
		v.fail(path, "want object, got %T", val)
		return
	}
	switch field {
	case "timers", "conversation_timers":
		for k, tv := range m {
			if k != "date_inactive" && k != "date_closed" {
				v.fail(path, "unexpected timer %q", k)
			}
			if tv == nil {
				continue
			}
			if str, ok := tv.(string); !ok {
				v.fail(path+"."+k, "want string")
			} else if _, err := time.Parse(time.RFC3339, str); err != nil {
				v.fail(path+"."+k, "bad date-time %q", str)
			}
		}
	case "messaging_binding", "participant_messaging_binding":
		allowed := []string{"type", "address", "proxy_address", "projected_address", "name", "level"}
		for k, bv := range m {
			if !slices.Contains(allowed, k) {
				v.fail(path, "unexpected binding key %q", k)
			}
			if _, ok := bv.(string); bv != nil && !ok {
				v.fail(path+"."+k, "want string or null")
			}
		}
		if t := m["type"]; t != "sms" && t != "whatsapp" {
			v.fail(path, "binding type %v", t)
		}
		if field == "participant_messaging_binding" && len(m) != len(allowed) {
			v.fail(path, "participant conversation binding must carry all six keys, got %v", m)
		}
		if a, ok := m["address"].(string); ok && m["type"] == "whatsapp" && !strings.HasPrefix(a, "whatsapp:+") {
			v.fail(path, "whatsapp address %q", a)
		}
	case "bindings":
	default:
		v.fail(path, "unexpected untyped field")
	}
}

// coverage records which value shapes appeared on the wire.
type coverage map[string]int

func (cv coverage) observe(kind string, obj map[string]any) {
	str := func(k string) string { s, _ := obj[k].(string); return s }
	timers := func(k string) {
		switch t := obj[k].(type) {
		case nil:
			cv["timers:null"]++
		case map[string]any:
			switch {
			case len(t) == 0:
				cv["timers:{}"]++
			case len(t) == 1:
				cv["timers:partial"]++
			case t["date_closed"] == nil:
				cv["timers:null-closed"]++
			default:
				cv["timers:full"]++
			}
		}
	}
	switch kind {
	case "conversations":
		cv["state:"+str("state")]++
		timers("timers")
		if obj["friendly_name"] == nil {
			cv["conversation:friendly_name:null"]++
		}
		if obj["unique_name"] == nil {
			cv["conversation:unique_name:null"]++
		}
		if obj["bindings"] == nil {
			cv["bindings:null"]++
		}
		if len(str("attributes")) > 15000 {
			cv["attributes:16KB"]++
		}
	case "participants":
		b, _ := obj["messaging_binding"].(map[string]any)
		switch {
		case b == nil && obj["identity"] == nil:
			cv["participant:attributes-only"]++
		case b == nil:
			cv["participant:chat"]++
		case b["projected_address"] != nil:
			cv["binding:group-mms-projected"]++
		case b["type"] == "whatsapp":
			cv["binding:whatsapp"]++
		case b["proxy_address"] == nil:
			cv["binding:group-mms-address"]++
		default:
			cv["binding:sms"]++
		}
		if obj["role_sid"] == nil {
			cv["participant:role_sid:null"]++
		}
		if obj["last_read_message_index"] == nil {
			cv["participant:last_read_message_index:null"]++
		}
		if ts := str("last_read_timestamp"); ts != "" {
			if _, err := time.Parse("2006-01-02T15:04:05.000Z", ts); err == nil {
				cv["participant:last_read_timestamp:millis"]++
			}
		}
	case "users":
		if obj["is_notifiable"] == nil {
			cv["user:is_notifiable:null"]++
		}
		if obj["role_sid"] == nil {
			cv["user:role_sid:null"]++
		}
		if obj["friendly_name"] == nil {
			cv["user:friendly_name:null"]++
		}
		id := str("identity")
		for _, special := range []string{"Zoë Ångström", "李雷", "/", "+", "%", "@", " ", ".42"} {
			if strings.Contains(id, special) {
				cv["identity:"+special]++
			}
		}
	case "user_conversations":
		cv["notification_level:"+str("notification_level")]++
		timers("timers")
	}
}

func TestSpecConformance(t *testing.T) {
	spec := loadSpec(t)
	s := startServer(t, Options{})
	c := newClient(t, s)
	ds := s.Dataset()
	base := s.URL()
	v := &schemaValidator{spec: spec, base: base, regexps: map[string]*regexp.Regexp{}}
	cov := coverage{}
	paths := spec["paths"].(map[string]any)
	respSchema := func(p string) map[string]any {
		op := paths[p].(map[string]any)["get"].(map[string]any)
		return op["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
	}
	// walkValidated walks a list, validating every page (items and meta)
	// against the operation's response schema.
	walkValidated := func(t *testing.T, specPath, u, key, kind string) []map[string]any {
		t.Helper()
		schema := respSchema(specPath)
		items := c.walk(u, key, func(page map[string]any) {
			v.check(specPath, schema, page)
			if meta := page["meta"].(map[string]any); meta["key"] != key {
				v.fail(specPath, "meta.key %v, want %s", meta["key"], key)
			}
		})
		for _, it := range items {
			cov.observe(kind, it)
		}
		if len(v.errs) > 0 {
			t.Fatalf("%s: %d schema violations:\n%s", u, len(v.errs), strings.Join(v.errs, "\n"))
		}
		return items
	}

	t.Run("configuration", func(t *testing.T) {
		got := c.getJSON(base + "/v1/Configuration")
		v.check("configuration", respSchema("/v1/Configuration"), got)
		if len(v.errs) > 0 {
			t.Fatal(strings.Join(v.errs, "\n"))
		}
		if got["default_chat_service_sid"] != ds.DefaultServiceSID() {
			t.Errorf("default_chat_service_sid = %v", got["default_chat_service_sid"])
		}
	})

	t.Run("services", func(t *testing.T) {
		got := walkValidated(t, "/v1/Services", base+"/v1/Services?PageSize=2", "services", "services")
		if len(got) != len(ds.Services()) {
			t.Fatalf("got %d services, want %d", len(got), len(ds.Services()))
		}
	})

	type scope struct {
		name   string
		prefix string // URL prefix up to /v1 or /v1/Services/IS
		spec   string // spec path prefix
		svc    string
	}
	var scopes []scope
	for _, svc := range ds.Services() {
		scopes = append(scopes, scope{"service/" + svc.SID, base + "/v1/Services/" + svc.SID, "/v1/Services/{ChatServiceSid}", svc.SID})
	}
	scopes = append(scopes, scope{"default-routes", base + "/v1", "/v1", ds.DefaultServiceSID()})

	for _, sc := range scopes {
		t.Run(sc.name, func(t *testing.T) {
			users := walkValidated(t, sc.spec+"/Users", sc.prefix+"/Users", "users", "users")
			if len(users) != len(ds.Users(sc.svc)) {
				t.Fatalf("users: got %d, want %d", len(users), len(ds.Users(sc.svc)))
			}
			for i, u := range ds.Users(sc.svc) {
				// Address half of the users by identity (path-escaped).
				ref := u.SID
				if i%2 == 1 {
					ref = escapePath(u.Identity)
				}
				ucs := walkValidated(t, sc.spec+"/Users/{UserSid}/Conversations", sc.prefix+"/Users/"+ref+"/Conversations", "conversations", "user_conversations")
				if want := len(ds.UserConversations(sc.svc, u.SID)); len(ucs) != want {
					t.Fatalf("user %q conversations: got %d, want %d", u.Identity, len(ucs), want)
				}
				if i < 20 || i%5 == 0 {
					pcs := walkValidated(t, sc.spec+"/ParticipantConversations", sc.prefix+"/ParticipantConversations?Identity="+q(u.Identity), "conversations", "participant_conversations")
					if len(pcs) != len(ucs) {
						t.Fatalf("participant conversations of %q: got %d, want %d", u.Identity, len(pcs), len(ucs))
					}
				}
			}
			convs := walkValidated(t, sc.spec+"/Conversations", sc.prefix+"/Conversations", "conversations", "conversations")
			if len(convs) != len(ds.Conversations(sc.svc)) {
				t.Fatalf("conversations: got %d, want %d", len(convs), len(ds.Conversations(sc.svc)))
			}
			total := 0
			for _, conv := range convs {
				sid := conv["sid"].(string)
				ps := walkValidated(t, sc.spec+"/Conversations/{ConversationSid}/Participants", sc.prefix+"/Conversations/"+sid+"/Participants", "participants", "participants")
				total += len(ps)
			}
			if total != ds.ParticipantCount(sc.svc) {
				t.Fatalf("participants: got %d, want %d", total, ds.ParticipantCount(sc.svc))
			}
			for i, a := range ds.Addresses(sc.svc) {
				if i%7 != 0 {
					continue
				}
				pcs := walkValidated(t, sc.spec+"/ParticipantConversations", sc.prefix+"/ParticipantConversations?Address="+q(a), "conversations", "participant_conversations")
				if want := len(ds.ParticipantConversations(sc.svc, "", a)); len(pcs) != want || want == 0 {
					t.Fatalf("address %q: got %d, want %d (>0)", a, len(pcs), want)
				}
			}
		})
	}

	t.Run("coverage", func(t *testing.T) {
		for _, k := range []string{
			"state:initializing", "state:inactive", "state:active", "state:closed",
			"notification_level:default", "notification_level:muted",
			"timers:null", "timers:{}", "timers:partial", "timers:full", "timers:null-closed",
			"conversation:friendly_name:null", "conversation:unique_name:null", "bindings:null", "attributes:16KB",
			"participant:attributes-only", "participant:chat", "binding:sms", "binding:whatsapp",
			"binding:group-mms-projected", "binding:group-mms-address",
			"participant:role_sid:null", "participant:last_read_message_index:null", "participant:last_read_timestamp:millis",
			"user:is_notifiable:null", "user:role_sid:null", "user:friendly_name:null",
			"identity:Zoë Ångström", "identity:李雷", "identity:/", "identity:+", "identity:%", "identity:@", "identity: ", "identity:.42",
		} {
			if cov[k] == 0 {
				t.Errorf("never observed %s", k)
			}
		}
	})
}

// escapePath escapes an identity for use as one URL path segment.
func escapePath(s string) string { return url.PathEscape(s) }
