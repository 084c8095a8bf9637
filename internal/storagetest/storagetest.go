package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // registers azblob://
	_ "gocloud.dev/blob/gcsblob"   // registers gs://
	_ "gocloud.dev/blob/s3blob"    // registers s3://
)

// Provider names, as in Server.Provider.
const (
	ProviderS3    = "s3"
	ProviderGCS   = "gcs"
	ProviderAzure = "azure"
)

// Pinned server versions. Changing one rebuilds (or reinstalls) the server
// into a new cache directory on the next run.
const (
	VersityGWPackage = "github.com/versity/versitygw/cmd/versitygw"
	VersityGWVersion = "v1.8.0"
	FakeGCSPackage   = "github.com/fsouza/fake-gcs-server"
	FakeGCSVersion   = "v1.56.1"
	AzuriteVersion   = "3.35.0" // also in azurite/package.json and its lock file
)

// Environment variables this package reads.
const (
	// EnvRequire set to 1 (or true) turns every "cannot install or start a
	// storage server here" skip into a test failure. CI sets it; when CI=true
	// and EnvRequire is unset, it is taken as set.
	EnvRequire = "CONVSYNC_REQUIRE_STORAGE"
	// EnvCacheDir overrides where servers are built or installed
	// (default: os.UserCacheDir()/convsync/testbin).
	EnvCacheDir = "CONVSYNC_TESTBIN"
)

// Server is one test's handle on a shared storage server: a fresh bucket
// (container, for Azure) created for the calling test and deleted, with
// everything in it, when the test ends.
type Server struct {
	// Provider is ProviderS3, ProviderGCS or ProviderAzure.
	Provider string
	// Version is the pinned server version ("versitygw v1.8.0", ...).
	Version string
	// Endpoint is the server's base URL, http://127.0.0.1:PORT.
	Endpoint string
	// Bucket is the fresh bucket made for this test.
	Bucket string
	// Env holds the variables gocloud needs to reach this server:
	// credentials, emulator host, and blanks that neutralise a developer's own
	// cloud settings. Set them all (SetEnv) before the first blob.OpenBucket
	// of the process: gcsblob and azureblob read their environment once.
	// The values are test credentials; don't log them.
	Env map[string]string
	// URL returns a gocloud bucket URL for bucket with all the options this
	// server needs. A non-empty prefix is passed as gocloud's "prefix" query
	// parameter (gocloud ignores a URL's path), so keys land under prefix.
	URL func(bucket, prefix string) string

	sh *shared
}

// SetEnv sets s.Env for the test with t.Setenv (so the test must not be
// parallel).
func (s *Server) SetEnv(t testing.TB) {
	t.Helper()
	for k, v := range s.Env {
		t.Setenv(k, v)
	}
}

// BucketURL is s.URL(s.Bucket, prefix).
func (s *Server) BucketURL(prefix string) string { return s.URL(s.Bucket, prefix) }

// Open opens s.Bucket (under prefix, if any) through blob.OpenBucket and
// closes it when the test ends. s.Env must already be set (SetEnv).
func (s *Server) Open(t testing.TB, prefix string) *blob.Bucket {
	t.Helper()
	for k, v := range s.Env {
		if os.Getenv(k) != v {
			t.Fatalf("storagetest: %s is not set as Server.Env says; call SetEnv before Open", k)
		}
	}
	b, err := blob.OpenBucket(context.Background(), s.BucketURL(prefix))
	if err != nil {
		t.Fatalf("storagetest: open %s bucket: %v", s.Provider, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// NewBucket creates another fresh bucket on the same server, deleted when the
// test ends.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	return s.sh.newBucket(t)
}

// BadCredentialsEnv returns Env with a wrong secret (S3, Azure), for probing
// how credentials errors surface. GCS returns nil: fake-gcs-server does not
// authenticate, and gcsblob sends no credentials to an emulator.
func (s *Server) BadCredentialsEnv() map[string]string {
	if s.sh.badEnv == nil {
		return nil
	}
	return maps.Clone(s.sh.badEnv)
}

// PendingUploads lists the unfinished uploads in bucket:
//   - S3: "key uploadID" of each multipart upload not completed or aborted
//     (ListMultipartUploads).
//   - Azure: names of blobs that have uncommitted blocks only (staged by
//     StageBlock, never committed).
//   - GCS: always empty; resumable upload sessions cannot be listed.
func (s *Server) PendingUploads(t testing.TB, bucket string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := s.sh.be.pending(ctx, bucket)
	if err != nil {
		t.Fatalf("storagetest: list pending uploads in %s: %v", bucket, err)
	}
	return p
}

// AbortPendingUploads aborts every unfinished multipart upload in bucket
// (S3) and reports how many there were. Other providers return 0.
func (s *Server) AbortPendingUploads(t testing.TB, bucket string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := s.sh.be.abortPending(ctx, bucket)
	if err != nil {
		t.Fatalf("storagetest: abort pending uploads in %s: %v", bucket, err)
	}
	return n
}

// S3 returns an S3-compatible server (versitygw, posix backend) on 127.0.0.1
// with a fresh bucket for t.
func S3(t testing.TB) *Server {
	t.Helper()
	return s3Lazy.get(t, startS3)
}

// GCS returns a Cloud Storage emulator (fake-gcs-server, memory backend) on
// 127.0.0.1 with a fresh bucket for t.
func GCS(t testing.TB) *Server {
	t.Helper()
	return gcsLazy.get(t, startGCS)
}

// Azure returns a Blob Storage emulator (Azurite, blob service only, in
// memory) on 127.0.0.1 with a fresh container for t.
func Azure(t testing.TB) *Server {
	t.Helper()
	return azureLazy.get(t, startAzure)
}

// backend is what the shared server does for the helper itself: bucket
// management and pending uploads, outside gocloud.
type backend interface {
	createBucket(ctx context.Context, name string) error
	deleteBucket(ctx context.Context, name string) error
	pending(ctx context.Context, bucket string) ([]string, error)
	abortPending(ctx context.Context, bucket string) (int, error)
}

// shared is one running server, shared by all tests of the test binary.
type shared struct {
	provider string
	version  string
	endpoint string
	env      map[string]string
	badEnv   map[string]string
	url      func(bucket, prefix string) string
	be       backend
	proc     *process
}

type lazy struct {
	once sync.Once
	sh   *shared
	err  error
}

var s3Lazy, gcsLazy, azureLazy lazy

func (l *lazy) get(t testing.TB, start func(logf func(string, ...any)) (*shared, error)) *Server {
	t.Helper()
	l.once.Do(func() {
		begin := time.Now()
		l.sh, l.err = start(t.Logf)
		if l.err == nil {
			t.Logf("storagetest: %s up on %s in %s (shared by this test binary)", l.sh.version, l.sh.endpoint, time.Since(begin).Round(time.Millisecond))
		}
	})
	if l.err != nil {
		unavailable(t, l.err)
	}
	sh := l.sh
	if sh.proc != nil {
		select {
		case <-sh.proc.done:
			t.Fatalf("storagetest: the shared %s server has exited: %v\n%s", sh.provider, sh.proc.err, sh.proc.out.String())
		default:
		}
	}
	return &Server{
		Provider: sh.provider,
		Version:  sh.version,
		Endpoint: sh.endpoint,
		Bucket:   sh.newBucket(t),
		Env:      maps.Clone(sh.env),
		URL:      sh.url,
		sh:       sh,
	}
}

// prereqError marks a prerequisite that cannot be had on this machine (a
// missing tool, an install that could not reach its registry): tests skip on
// it unless storage is required.
type prereqError struct{ err error }

func (e prereqError) Error() string { return e.err.Error() }
func (e prereqError) Unwrap() error { return e.err }

func prereq(format string, args ...any) error { return prereqError{fmt.Errorf(format, args...)} }

// Required reports whether storage servers are required (EnvRequire, or CI).
func Required() bool {
	if v, ok := os.LookupEnv(EnvRequire); ok && v != "" {
		b, err := strconv.ParseBool(v)
		return err != nil || b
	}
	b, _ := strconv.ParseBool(os.Getenv("CI"))
	return b
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	var pe prereqError
	if !errors.As(err, &pe) {
		t.Fatalf("storagetest: %v", err)
	}
	if Required() {
		t.Fatalf("storagetest: storage server required (%s=1 or CI) but unavailable: %v", EnvRequire, err)
	}
	t.Skipf("\n*** SKIPPED: storage server unavailable on this machine: %v\n*** (set %s=1 to make this a failure)", err, EnvRequire)
}

var bucketSeq atomic.Int64

// bucketName makes a name valid for S3, GCS and Azure containers: 3-63 of
// [a-z0-9-], starting and ending alphanumeric, no "--".
func bucketName(t testing.TB) string {
	var b strings.Builder
	dash := true
	for _, r := range strings.ToLower(t.Name()) {
		if b.Len() >= 24 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return fmt.Sprintf("cs-%s-%d-%s", name, bucketSeq.Add(1), hex.EncodeToString(rnd[:]))
}

func (sh *shared) newBucket(t testing.TB) string {
	t.Helper()
	name := bucketName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sh.be.createBucket(ctx, name); err != nil {
		t.Fatalf("storagetest: create %s bucket %s: %v", sh.provider, name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := sh.be.deleteBucket(ctx, name); err != nil {
			t.Errorf("storagetest: delete %s bucket %s: %v", sh.provider, name, err)
		}
	})
	return name
}
