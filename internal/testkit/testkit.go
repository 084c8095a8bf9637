// Package testkit holds what convsync's end-to-end tests share: the rows a
// simulated account should produce, flattened by INTERFACE.md's rules
// independently of package transform, and readers that load the real
// outputs back through DuckDB.
package testkit

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	_ "github.com/marcboeker/go-duckdb/v2" // database/sql driver "duckdb"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/stage"
)

// Row is one table row by column name.
type Row = map[string]any

// Tables maps a table name to its rows by key.
type Tables map[string]map[string]Row

// Key returns the row's key in table, from the key columns the schema
// declares.
func Key(table string, r Row) string {
	t, ok := schemas.ByName(table)
	if !ok {
		panic("testkit: unknown table " + table)
	}
	var parts []string
	for _, k := range t.Key() {
		parts = append(parts, fmt.Sprint(r[k]))
	}
	return strings.Join(parts, "|")
}

// normalize turns a rendered object into JSON-decoded values (json.Number).
func normalize(t testing.TB, obj map[string]any) map[string]any {
	t.Helper()
	buf, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(buf))
	d.UseNumber()
	var out map[string]any
	if err := d.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Flatten applies INTERFACE.md's column rules to an API object: a nested
// object becomes parent_child columns (for the children named in
// nested), links is dropped, free-form JSON (bindings) stays JSON text.
func Flatten(obj map[string]any, service string) Row {
	nested := map[string][]string{
		"messaging_binding":             {"type", "address", "proxy_address", "projected_address", "name", "level"},
		"participant_messaging_binding": {"type", "address", "proxy_address", "projected_address", "name", "level"},
		"timers":                        {"date_inactive", "date_closed"},
		"conversation_timers":           {"date_inactive", "date_closed"},
	}
	out := Row{}
	for k, v := range obj {
		switch {
		case k == "links":
		case nested[k] != nil:
			m, _ := v.(map[string]any)
			for _, c := range nested[k] {
				out[k+"_"+c] = m[c] // nil when the object or the child is absent
			}
		case k == "bindings":
			if v == nil {
				out[k] = nil
			} else {
				buf, _ := json.Marshal(v)
				out[k] = string(buf)
			}
		default:
			out[k] = v
		}
	}
	out["chat_service_sid"] = service
	return out
}

// Expected returns the rows an export of the whole account behind srv
// should write, flattened; deleted services, users and conversations keep
// their rows and have no children.
func Expected(t testing.TB, ds *fakeapi.Dataset, srv *fakeapi.Server) Tables {
	t.Helper()
	base := srv.URL()
	f := srv.Faults()
	out := Tables{}
	add := func(table, svc string, obj any) {
		r := Flatten(normalize(t, ds.JSON(base, obj)), svc)
		if out[table] == nil {
			out[table] = map[string]Row{}
		}
		k := Key(table, r)
		if _, dup := out[table][k]; dup {
			t.Fatalf("dataset has %s key %s twice", table, k)
		}
		out[table][k] = r
	}
	for _, s := range ds.Services() {
		svc := s.SID
		r := Flatten(normalize(t, ds.JSON(base, s)), svc)
		r["chat_service_sid"] = svc
		if out["services"] == nil {
			out["services"] = map[string]Row{}
		}
		out["services"][Key("services", r)] = r
		if slices.Contains(f.DeletedServiceSIDs, svc) {
			continue // listed, but everything under it is gone
		}
		for _, u := range ds.Users(svc) {
			add("users", svc, u)
			if f.IsUserDeleted(u.SID) {
				continue
			}
			for _, uc := range ds.UserConversations(svc, u.SID) {
				add("user_conversations", svc, uc)
			}
		}
		for _, c := range ds.Conversations(svc) {
			add("conversations", svc, c)
			if f.IsConversationDeleted(c.SID) {
				continue
			}
			for _, p := range ds.Participants(svc, c.SID) {
				add("participants", svc, p)
			}
		}
	}
	for _, tab := range []string{"services", "users", "user_conversations", "conversations", "participants"} {
		if out[tab] == nil {
			out[tab] = map[string]Row{}
		}
	}
	return out
}

// ExpectedLookup returns the participant_conversations rows a lookup of
// one subject should write, across every service.
func ExpectedLookup(t testing.TB, ds *fakeapi.Dataset, srv *fakeapi.Server, kind, value string) map[string]Row {
	t.Helper()
	out := map[string]Row{}
	for _, s := range ds.Services() {
		var pcs []fakeapi.ParticipantConversation
		if kind == "identity" {
			pcs = ds.ParticipantConversations(s.SID, value, "")
		} else {
			pcs = ds.ParticipantConversations(s.SID, "", value)
		}
		for _, pc := range pcs {
			r := Flatten(normalize(t, ds.JSON(srv.URL(), pc)), s.SID)
			r["subject_kind"], r["subject"] = kind, value
			out[Key("participant_conversations", r)] = r
		}
	}
	return out
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// Query runs q on the DuckDB database at path ("" for in-memory) and
// returns every row by column name.
func Query(t testing.TB, path, q string, args ...any) []Row {
	t.Helper()
	rows, err := QueryErr(path, q, args...)
	if err != nil {
		t.Fatalf("query %q on %s: %v", q, path, err)
	}
	return rows
}

// ReadParquet reads one table's Parquet dataset under dir through DuckDB.
func ReadParquet(t testing.TB, dir, table string) []Row {
	t.Helper()
	q := fmt.Sprintf("SELECT * FROM read_parquet('%s/%s/**/*.parquet', hive_partitioning = true)",
		strings.ReplaceAll(dir, "'", "''"), table)
	return Query(t, "", q)
}

// CompareTable checks that got holds every wanted row exactly once, with
// every column of want equal, and nothing else. Columns of got that want
// lacks must be listed in extra (convsync's own columns).
func CompareTable(t testing.TB, table string, got []Row, want map[string]Row, extra ...string) {
	t.Helper()
	seen := map[string]bool{}
	allowed := set(extra)
	errs := 0
	report := func(format string, args ...any) {
		errs++
		if errs <= 20 {
			t.Errorf(table+": "+format, args...)
		}
	}
	for _, g := range got {
		k := Key(table, g)
		if seen[k] {
			report("row %s appears twice", k)
			continue
		}
		seen[k] = true
		w, ok := want[k]
		if !ok {
			report("unexpected row %s", k)
			continue
		}
		for col, wv := range w {
			gv, present := g[col]
			if !present {
				report("no column %s", col)
				continue
			}
			if !Equal(gv, wv) {
				report("row %s column %s = %#v, want %#v", k, col, gv, wv)
			}
		}
		for col := range g {
			if _, ok := w[col]; !ok && !allowed[col] {
				report("unexpected column %s", col)
			}
		}
	}
	for k := range want {
		if !seen[k] {
			report("missing row %s", k)
		}
	}
	if errs > 20 {
		t.Errorf("%s: %d mismatches in all", table, errs)
	}
}

// Equal compares a value read from DuckDB with an API JSON value.
func Equal(got, want any) bool {
	if want == nil || got == nil {
		return want == nil && got == nil
	}
	switch w := want.(type) {
	case json.Number:
		switch g := got.(type) {
		case int64:
			return w.String() == fmt.Sprint(g)
		case int32:
			return w.String() == fmt.Sprint(g)
		case *big.Int:
			return w.String() == g.String()
		}
		return false
	case string:
		if g, ok := got.(time.Time); ok {
			wt, err := time.Parse(time.RFC3339Nano, w)
			return err == nil && wt.Equal(g)
		}
		if g, ok := got.(string); ok {
			if g == w {
				return true
			}
			// JSON text compares by value.
			var a, b any
			return json.Unmarshal([]byte(g), &a) == nil && json.Unmarshal([]byte(w), &b) == nil &&
				reflect.DeepEqual(a, b) && (strings.HasPrefix(w, "{") || strings.HasPrefix(w, "["))
		}
		return false
	case bool:
		g, ok := got.(bool)
		return ok && g == w
	}
	return reflect.DeepEqual(got, want)
}

// SortedKeys returns m's keys in order (for stable messages).
func SortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Skipped returns how many child lists an export of srv's account finds
// gone: two per deleted service (users, conversations), one per deleted
// user or conversation of the other services.
func Skipped(ds *fakeapi.Dataset, srv *fakeapi.Server) int64 {
	f := srv.Faults()
	var n int64
	for _, s := range ds.Services() {
		if slices.Contains(f.DeletedServiceSIDs, s.SID) {
			n += 2
			continue
		}
		for _, u := range ds.Users(s.SID) {
			if f.IsUserDeleted(u.SID) {
				n++
			}
		}
		for _, c := range ds.Conversations(s.SID) {
			if f.IsConversationDeleted(c.SID) {
				n++
			}
		}
	}
	return n
}

// pages is the number of requests a list of n items takes at page size
// size: one at least (an empty list, or a 404 for a deleted parent).
func pages(n, size int) int64 {
	if n == 0 {
		return 1
	}
	return int64((n + size - 1) / size)
}

// Done is what an interrupted export had made durable: the child lists
// finished (unit keys "u svc sid" and "c svc sid"), and per long list
// walk ("u svc" and "c svc") how many items it had listed and whether it
// was complete.
type Done struct {
	Children map[string]bool
	Walks    map[string]Walk
	// Requests is what the checkpoint counted as sent.
	Requests int64
}

// Walk is where a user or conversation list walk stood.
type Walk struct {
	Listed   int
	Complete bool
}

// Requests counts the requests a full export of srv's account needs when
// every list is read at its maximum page size and nothing is fetched
// twice: the minimum, which an export without faults must meet exactly.
// With done, it counts what a resumed export still needs: the services
// again, the rest of each walk, and the child lists not finished.
func Requests(ds *fakeapi.Dataset, srv *fakeapi.Server, done *Done) int64 {
	if done == nil {
		done = &Done{}
	}
	f := srv.Faults()
	svcs := ds.Services()
	n := pages(len(svcs), extract.PageSizeServices)
	walk := func(key string, items, size int) int64 {
		w := done.Walks[key]
		switch {
		case w.Complete:
			return 0
		default:
			return pages(items, size) - int64(w.Listed/size)
		}
	}
	for _, s := range svcs {
		if slices.Contains(f.DeletedServiceSIDs, s.SID) {
			n += walk("u "+s.SID, 0, 1) + walk("c "+s.SID, 0, 1)
			continue
		}
		users, convs := ds.Users(s.SID), ds.Conversations(s.SID)
		n += walk("u "+s.SID, len(users), extract.PageSizeUsers)
		n += walk("c "+s.SID, len(convs), extract.PageSizeConversations)
		for _, u := range users {
			switch {
			case done.Children["u "+s.SID+" "+u.SID]:
			case f.IsUserDeleted(u.SID):
				n++
			default:
				n += pages(len(ds.UserConversations(s.SID, u.SID)), extract.PageSizeUserConversations)
			}
		}
		for _, c := range convs {
			switch {
			case done.Children["c "+s.SID+" "+c.SID]:
			case f.IsConversationDeleted(c.SID):
				n++
			default:
				n += pages(len(ds.Participants(s.SID, c.SID)), extract.PageSizeParticipants)
			}
		}
	}
	return n
}

// DoneFrom reads what an export's checkpoint vouches for.
func DoneFrom(t testing.TB, cp *stage.Checkpoint) *Done {
	t.Helper()
	var st struct {
		Requests int64 `json:"requests"`
		Walks    map[string]struct {
			Done bool `json:"done"`
		} `json:"walks"`
	}
	if err := json.Unmarshal(cp.State, &st); err != nil {
		t.Fatal(err)
	}
	d := &Done{Children: map[string]bool{}, Walks: map[string]Walk{}, Requests: st.Requests}
	for _, l := range cp.Log {
		f := strings.Fields(l)
		switch {
		case len(f) == 4 && f[0] == "D":
			d.Children[f[1]+" "+f[2]+" "+f[3]] = true
		case len(f) == 4 && f[0] == "P":
			w := d.Walks[f[1]+" "+f[2]]
			w.Listed++
			d.Walks[f[1]+" "+f[2]] = w
		}
	}
	for k, w := range st.Walks {
		key := strings.Replace(k, ":", " ", 1)
		x := d.Walks[key]
		x.Complete = w.Done
		d.Walks[key] = x
	}
	return d
}

// Matches reports whether got holds exactly the wanted rows (as
// CompareTable checks, without failing the test): every wanted row once,
// every wanted column equal, nothing else.
func Matches(table string, got []Row, want map[string]Row) bool {
	if len(got) != len(want) {
		return false
	}
	seen := make(map[string]bool, len(got))
	for _, g := range got {
		k := Key(table, g)
		w, ok := want[k]
		if !ok || seen[k] {
			return false
		}
		seen[k] = true
		for col, wv := range w {
			if gv, ok := g[col]; !ok || !Equal(gv, wv) {
				return false
			}
		}
	}
	return true
}

// QueryErr is Query returning the error instead of failing the test (for
// a table that may not exist yet).
func QueryErr(path, q string, args ...any) ([]Row, error) {
	db, err := sql.Open("duckdb", path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.Query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []Row
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		r := Row{}
		for i, c := range cols {
			r[c] = vals[i]
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// HashTree returns the sha256 of every file under root, by path, leaving
// out the files skip names (nil: none).
func HashTree(t testing.TB, root string, skip func(path string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (skip != nil && skip(p)) {
			return err
		}
		buf, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(buf)
		out[p] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
