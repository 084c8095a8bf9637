package dataset_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/internal/faultpoint"
	"github.com/convsync/convsync/internal/storagetest"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/dataset"
	"github.com/convsync/convsync/sink/lock"
	"github.com/convsync/convsync/sink/runs"
)

// TestMain lets the test binary be a convsync process uploading into a
// bucket, which a test kills in the middle of its upload.
func TestMain(m *testing.M) {
	if u := os.Getenv("DATASET_TEST_PUBLISH_URL"); u != "" {
		b, err := dataset.NewBucket(u, os.Getenv("DATASET_TEST_CONTROL"), zerolog.Nop())
		if err == nil {
			err = b.Publish(context.Background(), []schemas.Table{schemas.Participants},
				map[string]string{"participants": os.Getenv("DATASET_TEST_FILE")}, runs.Record{RunID: "killed", SnapshotDate: "2026-11-20"})
		}
		fmt.Println("publish ended:", err)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func TestBucketURL(t *testing.T) {
	cases := []struct {
		in, location string
		err          string
	}{
		{"s3://b/lake/twilio?region=eu-west-1&endpoint=http://x:9000&use_path_style=true", "s3://b/lake/twilio?endpoint=http%3A%2F%2Fx%3A9000&region=eu-west-1&use_path_style=true", ""},
		{"s3://b/lake/", "s3://b/lake", ""},
		{"gs://b", "gs://b", ""},
		{"azblob://container/p", "azblob://container/p", ""},
		{"s3://b/x?prefix=y/", "", "not as ?prefix="},
		{"s3:///nobucket", "", "not a bucket URL"},
		{"s3://user:pw@b/x", "", "not a bucket URL"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			b, err := dataset.NewBucket(c.in, t.TempDir(), zerolog.Nop())
			switch {
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Errorf("err = %v, want %q", err, c.err)
			case c.err == "" && err != nil:
				t.Errorf("err = %v", err)
			case c.err == "" && b.Location() != c.location:
				t.Errorf("location %q, want %q", b.Location(), c.location)
			}
		})
	}
	a, _ := dataset.NewBucket("s3://b/p?region=x&use_path_style=true", "/r", zerolog.Nop())
	b, _ := dataset.NewBucket("s3://b/p/?use_path_style=true&region=x", "/r", zerolog.Nop())
	if a.ControlDir() != b.ControlDir() {
		t.Errorf("one bucket prefix, two control folders: %s %s", a.ControlDir(), b.ControlDir())
	}
}

// lakeURL is the --parquet URL of prefix "lake" in srv's bucket.
func lakeURL(srv *storagetest.Server) string {
	scheme, rest, _ := strings.Cut(srv.BucketURL(""), "://")
	bucket, query, _ := strings.Cut(rest, "?")
	return scheme + "://" + bucket + "/lake?" + query
}

// TestKillMidMultipartUpload kills a process in the middle of the
// multipart upload of a partition: the previous object stays as it was, an
// unfinished multipart upload is left, the next run's check aborts it, and
// the next publish completes.
func TestKillMidMultipartUpload(t *testing.T) {
	srv := storagetest.S3(t)
	srv.SetEnv(t)
	bk := srv.Open(t, "")
	key := "lake/participants/snapshot_date=2026-11-20/part-00000.parquet"
	old := []byte("the previous object")
	if err := bk.WriteAll(context.Background(), key, old, nil); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "participants.parquet")
	data := make([]byte, 40<<20)
	rand.Read(data)
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	control := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DATASET_TEST_PUBLISH_URL="+lakeURL(srv), "DATASET_TEST_CONTROL="+control, "DATASET_TEST_FILE="+big,
		faultpoint.EnvVar+"=upload-part:participants/snapshot_date=2026-11-20/part-00000.parquet:kill")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("the uploading process was not killed: %v: %s", err, out)
	}
	if got, err := bk.ReadAll(context.Background(), key); err != nil || !bytes.Equal(got, old) {
		t.Errorf("the object changed by a killed upload (%d bytes, %v)", len(got), err)
	}
	pending := srv.PendingUploads(t, srv.Bucket)
	if len(pending) != 1 {
		t.Fatalf("unfinished uploads after the kill: %v, want the one under way", pending)
	}
	b, err := dataset.NewBucket(lakeURL(srv), control, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if pending := srv.PendingUploads(t, srv.Bucket); len(pending) != 0 {
		t.Errorf("unfinished uploads after the next run's check: %v", pending)
	}
	if err := b.Publish(context.Background(), []schemas.Table{schemas.Participants}, map[string]string{"participants": big},
		runs.Record{RunID: "next", SnapshotDate: "2026-11-20"}); err != nil {
		t.Fatal(err)
	}
	if got, err := bk.ReadAll(context.Background(), key); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the next publish did not write the whole object (%d bytes, %v)", len(got), err)
	}
}

// TestBucketLease: a second run on a prefix another live run holds is
// busy; the lease goes with the first run's end; a lease nobody renewed
// for longer than its TTL, or whose holder on this machine is gone, is
// taken over.
func TestBucketLease(t *testing.T) {
	srv := storagetest.S3(t)
	srv.SetEnv(t)
	bk := srv.Open(t, "")
	open := func() *dataset.Bucket {
		b, err := dataset.NewBucket(lakeURL(srv), t.TempDir(), zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	ctx := context.Background()
	first := open()
	if err := first.Lease(ctx, "run-1"); err != nil {
		t.Fatal(err)
	}
	second := open()
	if err := second.Lease(ctx, "run-2"); !errors.Is(err, lock.ErrBusy) || !strings.Contains(err.Error(), "run-1") {
		t.Fatalf("second lease: %v, want ErrBusy naming run-1", err)
	}
	if err := first.Prepare(ctx); err != nil {
		t.Errorf("the holder's lease check: %v", err)
	}
	first.Close()
	if err := second.Lease(ctx, "run-2"); err != nil {
		t.Fatalf("lease after the first run ended: %v", err)
	}
	second.Close()

	for name, holder := range map[string]map[string]any{
		"not renewed":    {"run_id": "gone", "id": "x", "host": "elsewhere", "pid": 1, "renewed": time.Now().Add(-10 * time.Minute)},
		"dead local pid": {"run_id": "gone", "id": "x", "host": hostname(t), "pid": 999999999, "renewed": time.Now()},
	} {
		t.Run(name, func(t *testing.T) {
			data, _ := json.Marshal(holder)
			if err := bk.WriteAll(ctx, "lake/_convsync/lease.json", data, nil); err != nil {
				t.Fatal(err)
			}
			b := open()
			if err := b.Lease(ctx, "run-3"); err != nil {
				t.Fatalf("taking over a stale lease: %v", err)
			}
			b.Close()
		})
	}
	t.Run("live elsewhere", func(t *testing.T) {
		data, _ := json.Marshal(map[string]any{"run_id": "alive", "id": "y", "host": "elsewhere", "pid": 1, "renewed": time.Now()})
		if err := bk.WriteAll(ctx, "lake/_convsync/lease.json", data, nil); err != nil {
			t.Fatal(err)
		}
		if err := open().Lease(ctx, "run-4"); !errors.Is(err, lock.ErrBusy) {
			t.Errorf("a fresh lease of another machine: %v, want ErrBusy", err)
		}
		bk.Delete(ctx, "lake/_convsync/lease.json")
	})
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
