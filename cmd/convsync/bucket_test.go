package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"gocloud.dev/blob"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/internal/faultpoint"
	"github.com/convsync/convsync/internal/storagetest"
	"github.com/convsync/convsync/internal/testkit"
	"github.com/convsync/convsync/schemas"
)

// lakeURL is the --parquet URL of prefix "lake" in srv's test bucket, in
// INTERFACE.md's form (the prefix as the URL's path).
func lakeURL(srv *storagetest.Server) string {
	u := srv.BucketURL("")
	scheme, rest, _ := strings.Cut(u, "://")
	bucket, query, _ := strings.Cut(rest, "?")
	out := scheme + "://" + bucket + "/lake"
	if query != "" {
		out += "?" + query
	}
	return out
}

func envOf(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// objects lists the keys under the lake prefix.
func objects(t *testing.T, b *blob.Bucket) []string {
	t.Helper()
	var keys []string
	it := b.List(&blob.ListOptions{Prefix: "lake/"})
	for {
		o, err := it.Next(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, strings.TrimPrefix(o.Key, "lake/"))
	}
	slices.Sort(keys)
	return keys
}

// download copies the lake's objects into a local folder, for DuckDB.
func download(t *testing.T, b *blob.Bucket) string {
	t.Helper()
	dir := t.TempDir()
	for _, k := range objects(t, b) {
		data, err := b.ReadAll(context.Background(), "lake/"+k)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(k))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// checkLake reads the lake back through DuckDB: each table's partition of
// date holds the night's rows exactly, in exactly one object.
func checkLake(t *testing.T, b *blob.Bucket, n *night, date string) {
	t.Helper()
	keys := objects(t, b)
	dir := download(t, b)
	for _, tab := range schemas.Export {
		var parts []string
		for _, k := range keys {
			if strings.HasPrefix(k, tab.Name+"/snapshot_date="+date+"/") {
				parts = append(parts, k)
			}
		}
		if len(parts) != 1 || parts[0] != tab.Name+"/snapshot_date="+date+"/part-00000.parquet" {
			t.Errorf("%s %s: objects %v, want exactly part-00000.parquet", tab.Name, date, parts)
		}
		got := testkit.Query(t, "", fmt.Sprintf("SELECT * FROM read_parquet('%s/%s/**/*.parquet', hive_partitioning = true) WHERE snapshot_date = DATE '%s'", dir, tab.Name, date))
		testkit.CompareTable(t, tab.Name, got, n.want[tab.Name], "run_id", "snapshot_date")
	}
}

// secretForms are the forms a storage or Twilio credential could take.
func secretForms(env map[string]string, n *night) []string {
	var out []string
	add := func(user, secret string) {
		if secret == "" {
			return
		}
		out = append(out, secret)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			out = append(out, enc.EncodeToString([]byte(user+":"+secret)))
		}
	}
	add(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
	add(env["AZURE_STORAGE_ACCOUNT"], env["AZURE_STORAGE_KEY"])
	c := n.srv.Credentials()
	add(c.AccountSID, c.AuthToken)
	return out
}

// TestBucketRoundTrips exports into a bucket of each provider's server: a
// night, a second date, a re-run of the first date; each read back
// through DuckDB matches the dataset, each table partition is one object,
// and no credential of the storage or of Twilio is in any object, log or
// output.
func TestBucketRoundTrips(t *testing.T) {
	for _, provider := range []string{storagetest.ProviderS3, storagetest.ProviderGCS, storagetest.ProviderAzure} {
		t.Run(provider, func(t *testing.T) {
			var srv *storagetest.Server
			switch provider {
			case storagetest.ProviderS3:
				srv = storagetest.S3(t)
			case storagetest.ProviderGCS:
				srv = storagetest.GCS(t)
			default:
				srv = storagetest.Azure(t)
			}
			srv.SetEnv(t)
			b := srv.Open(t, "")
			n1, n2 := startNight(t, 81, fakeapi.Faults{}), startNight(t, 82, fakeapi.Faults{})
			env := func(n *night) []string { return append(n.env(), envOf(srv.Env)...) }
			staging := t.TempDir()
			// With S3, DuckDB is written too, from the same staged files.
			db := ""
			if provider == storagetest.ProviderS3 {
				db = filepath.Join(t.TempDir(), "c.duckdb")
			}
			run := func(n *night, date string, extra ...string) *proc {
				args := append([]string{"export", "--base-url", n.srv.URL(), "--parquet", lakeURL(srv), "--staging", staging,
					"--snapshot-date", date, "--progress", "off"}, extra...)
				if db != "" {
					args = append(args, "--duckdb", db)
				}
				p := runProc(t, env(n), args...)
				if p.code != 0 {
					t.Fatalf("export %s: exit %d: %s", date, p.code, p.lastLine())
				}
				return p
			}
			var outs []string
			p := run(n1, "2026-11-20")
			outs = append(outs, p.stdout.String()+p.stderr.String())
			checkLake(t, b, n1, "2026-11-20")
			p = run(n2, "2026-11-21")
			outs = append(outs, p.stdout.String()+p.stderr.String())
			checkLake(t, b, n1, "2026-11-20")
			checkLake(t, b, n2, "2026-11-21")
			p = run(n2, "2026-11-20") // the same date again: replaced
			outs = append(outs, p.stdout.String()+p.stderr.String())
			checkLake(t, b, n2, "2026-11-20")
			if db != "" {
				for _, tab := range schemas.Export {
					testkit.CompareTable(t, tab.Name, testkit.Query(t, db, "SELECT * FROM "+tab.Name), n2.want[tab.Name], "run_id")
				}
			}
			keys := objects(t, b)
			runRecords := 0
			for _, k := range keys {
				if strings.HasPrefix(k, "_runs/") {
					runRecords++
				}
				if !strings.HasPrefix(k, "_runs/") && !strings.Contains(k, "/snapshot_date=") {
					t.Errorf("unexpected object %s (staging or a lock left in the bucket?)", k)
				}
			}
			if runRecords != 3 {
				t.Errorf("%d run records, want 3: %v", runRecords, keys)
			}
			forms := secretForms(srv.Env, n1)
			for _, k := range keys {
				data, _ := b.ReadAll(context.Background(), "lake/"+k)
				for _, f := range forms {
					if strings.Contains(string(data), f) {
						t.Errorf("object %s holds a credential", k)
					}
				}
			}
			for _, o := range outs {
				for _, f := range forms {
					if strings.Contains(o, f) {
						t.Errorf("the output or logs hold a credential")
					}
				}
			}
			if pending := srv.PendingUploads(t, srv.Bucket); len(pending) > 0 {
				t.Errorf("unfinished uploads left: %v", pending)
			}
		})
	}
}

// TestBucketKillDuringPublish kills (SIGKILL) an export to S3 as it
// publishes, after its first tables are uploaded: every partition holds
// the old night or the new one, complete; the next run (--resume) leaves
// no unfinished upload and publishes the new night. (A kill in the middle
// of one multipart upload is tested in sink/dataset.)
func TestBucketKillDuringPublish(t *testing.T) {
	srv := storagetest.S3(t)
	srv.SetEnv(t)
	b := srv.Open(t, "")
	staging := t.TempDir()
	old, next := startNight(t, 91, fakeapi.Faults{}), startNight(t, 92, fakeapi.Faults{})
	args := func(n *night) []string {
		return []string{"export", "--base-url", n.srv.URL(), "--parquet", lakeURL(srv), "--staging", staging,
			"--snapshot-date", "2026-11-20", "--progress", "off"}
	}
	if p := runProc(t, append(old.env(), envOf(srv.Env)...), args(old)...); p.code != 0 {
		t.Fatalf("the old night: exit %d: %s", p.code, p.lastLine())
	}
	env := append(append(next.env(), envOf(srv.Env)...), faultpoint.EnvVar+"=parquet:participants:kill")
	if p := runProc(t, env, args(next)...); p.code != 128+int(syscall.SIGKILL) {
		t.Fatalf("the run was not killed at the participants upload: exit %d: %s", p.code, p.lastLine())
	}
	dir := download(t, b)
	for _, tab := range schemas.Export {
		got := testkit.Query(t, "", fmt.Sprintf("SELECT * FROM read_parquet('%s/%s/**/*.parquet', hive_partitioning = true)", dir, tab.Name))
		if !testkit.Matches(tab.Name, got, old.want[tab.Name]) && !testkit.Matches(tab.Name, got, next.want[tab.Name]) {
			t.Errorf("%s after the kill holds neither night completely", tab.Name)
		}
	}
	if got := testkit.Query(t, "", fmt.Sprintf("SELECT * FROM read_parquet('%s/participants/**/*.parquet')", dir)); !testkit.Matches("participants", got, old.want["participants"]) {
		t.Error("the participants partition, whose upload the kill prevented, is not the old night's")
	}
	r := runProc(t, append(next.env(), envOf(srv.Env)...), append(args(next), "--resume")...)
	if r.code != 0 {
		t.Fatalf("--resume: exit %d: %s", r.code, r.lastLine())
	}
	if pending := srv.PendingUploads(t, srv.Bucket); len(pending) > 0 {
		t.Errorf("unfinished multipart uploads after the next run: %v", pending)
	}
	checkLake(t, b, next, "2026-11-20")
}

// TestBucketRefusedBeforeFetching: a missing bucket and a wrong secret are
// refused with exit 2 and one line saying so, before any API request.
func TestBucketRefusedBeforeFetching(t *testing.T) {
	srv := storagetest.S3(t)
	n := startNight(t, 95, fakeapi.Faults{})
	cases := []struct {
		name, url string
		env       map[string]string
		want      string
	}{
		{"missing bucket", strings.Replace(lakeURL(srv), srv.Bucket, "no-such-bucket-"+strings.ToLower(srv.Bucket[len(srv.Bucket)-6:]), 1), srv.Env, "does not exist"},
		{"wrong secret", lakeURL(srv), srv.BadCredentialsEnv(), "denied"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n.srv.ResetCounters()
			p := runProc(t, append(n.env(), envOf(c.env)...), "export", "--base-url", n.srv.URL(), "--parquet", c.url,
				"--staging", t.TempDir(), "--progress", "off")
			if p.code != 2 || !strings.Contains(p.lastLine(), c.want) {
				t.Errorf("exit %d, %q; want 2 saying %q", p.code, p.lastLine(), c.want)
			}
			if got := n.srv.Counters().Requests; got != 0 {
				t.Errorf("%d API requests before the bucket was refused", got)
			}
			for _, f := range secretForms(c.env, n) {
				if strings.Contains(p.stderr.String(), f) {
					t.Error("stderr holds a credential")
				}
			}
		})
	}
}
