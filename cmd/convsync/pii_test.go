package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/schemas"
)

// piiColumns returns, per table, the columns tagged PII and their class.
func piiColumns() map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, tab := range append(append([]schemas.Table{}, schemas.Export...), schemas.Lookup...) {
		out[tab.Name] = map[string]string{}
		for _, f := range tab.Schema.Fields() {
			if c := schemas.Meta(f, schemas.MetaPII); c != "" {
				out[tab.Name][f.Name] = c
			}
		}
	}
	return out
}

// applyPolicy returns want as --pii mode should write it.
func applyPolicy(want map[string]testkit.Row, table, mode string, key []byte) map[string]testkit.Row {
	cols := piiColumns()[table]
	out := map[string]testkit.Row{}
	for k, r := range want {
		c := testkit.Row{}
		for col, v := range r {
			class, tagged := cols[col]
			switch {
			case !tagged || v == nil:
				c[col] = v
			case mode == "hash" && class == schemas.PIIStandard:
				m := hmac.New(sha256.New, key)
				m.Write([]byte(v.(string)))
				c[col] = hex.EncodeToString(m.Sum(nil))
			default:
				c[col] = nil
			}
		}
		out[k] = c
	}
	return out
}

// rekey indexes rows by the key their hashed/redacted form still has.
func rekey(table string, rows map[string]testkit.Row) map[string]testkit.Row {
	out := map[string]testkit.Row{}
	for _, r := range rows {
		out[testkit.Key(table, r)] = r
	}
	return out
}

// TestPIIModes exports and looks up the simulated account with --pii hash
// and --pii redact into DuckDB and Parquet, logging at debug level, and
// checks: every tagged column holds the HMAC (hash) or NULL (redact), every
// other column is unchanged, and no raw value of any tagged column appears
// in any byte of the output files, run records or logs.
func TestPIIModes(t *testing.T) {
	ds, srv := startAPI(t, fakeapi.Faults{Seed: 5, Rate429: 0.05, Rate503: 0.03, DeletedConversations: 0.02})
	key := []byte("test pii key, not a secret")
	t.Setenv("CONVSYNC_PII_KEY", string(key))
	want := testkit.Expected(t, ds, srv)
	lookups := []struct{ kind, value string }{
		{"identity", "jane+support@example.com"}, {"identity", "Zoë Ångström"}, {"identity", "ops/night shift"},
	}
	for _, s := range ds.Services() {
		if a := ds.Addresses(s.SID); len(a) > 0 {
			lookups = append(lookups, struct{ kind, value string }{"address", a[0]})
			break
		}
	}
	wantLookup := map[string]testkit.Row{}
	for _, l := range lookups {
		for k, r := range testkit.ExpectedLookup(t, ds, srv, l.kind, l.value) {
			wantLookup[k] = r
		}
	}
	want["participant_conversations"] = wantLookup

	// Every raw value of a tagged column, long enough not to occur by chance.
	raw := map[string]bool{}
	for table, cols := range piiColumns() {
		for _, r := range want[table] {
			for col := range cols {
				if s, ok := r[col].(string); ok && len(s) >= 6 {
					raw[s] = true
				}
			}
		}
	}
	if len(raw) < 100 {
		t.Fatalf("only %d raw PII values to look for", len(raw))
	}

	for _, mode := range []string{"hash", "redact"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			db, pq := filepath.Join(dir, "c.duckdb"), filepath.Join(dir, "pq")
			args := []string{"--base-url", srv.URL(), "--duckdb", db, "--parquet", pq, "--pii", mode, "--log-level", "debug"}
			var logs bytes.Buffer
			r := runCmd(t, append([]string{"export"}, args...)...)
			logs.WriteString(r.stdout + r.stderr)
			if r.code != 0 {
				t.Fatalf("export: exit %d: %s", r.code, r.lastStderrLine())
			}
			largs := append([]string{"lookup"}, args...)
			for _, l := range lookups {
				largs = append(largs, "--"+l.kind, l.value)
			}
			largs = append(largs, "--identity", "nobody at all, anywhere")
			r = runCmd(t, largs...)
			logs.WriteString(r.stdout + r.stderr)
			if r.code != 0 {
				t.Fatalf("lookup: exit %d: %s", r.code, r.lastStderrLine())
			}

			for table, rows := range want {
				exp := rekey(table, applyPolicy(rows, table, mode, key))
				if table == "participant_conversations" && mode == "redact" {
					// The subject is redacted too, so rows of different
					// subjects can share a key: compare counts and columns.
					got := testkit.Query(t, db, "SELECT count(*) AS n, count(subject) AS s FROM participant_conversations")[0]
					if got["n"] != int64(len(rows)) || got["s"] != int64(0) {
						t.Errorf("participant_conversations: %v, want %d rows with NULL subjects", got, len(rows))
					}
					continue
				}
				testkit.CompareTable(t, table, testkit.Query(t, db, "SELECT * FROM "+table), exp, "run_id")
				testkit.CompareTable(t, table, testkit.ReadParquet(t, pq, table), exp, "run_id", "snapshot_date")
			}

			// Same identity, same hash, across tables.
			if mode == "hash" {
				n := testkit.Query(t, db, `SELECT count(*) AS n FROM users u JOIN participants p
					ON p.identity = u.identity AND p.chat_service_sid = u.chat_service_sid`)[0]["n"]
				if n.(int64) == 0 {
					t.Error("hashed identities of users and participants do not join")
				}
			}

			// No raw value anywhere: every byte of every file, and the logs.
			var leaks []string
			scan := func(name string, buf []byte) {
				for v := range raw {
					if bytes.Contains(buf, []byte(v)) {
						leaks = append(leaks, name+": "+v)
					}
				}
			}
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				buf, err := os.ReadFile(p)
				scan(p, buf)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			scan("logs", logs.Bytes())
			sort.Strings(leaks)
			for i, l := range leaks {
				if i < 10 {
					t.Errorf("raw PII value found in %s", l)
				}
			}
			if len(leaks) > 10 {
				t.Errorf("%d leaks in all", len(leaks))
			}
			// The scan means something only if the logs show the requests
			// that carried the subjects.
			if !bytes.Contains(logs.Bytes(), []byte("/ParticipantConversations?")) {
				t.Error("debug logs show no ParticipantConversations request")
			}
		})
	}
}
