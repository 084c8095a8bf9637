package dataset

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rs/zerolog"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // azblob:// URLs
	_ "gocloud.dev/blob/gcsblob"   // gs:// URLs
	_ "gocloud.dev/blob/s3blob"    // s3:// URLs
	"gocloud.dev/gcerrors"

	"github.com/convsync/convsync/internal/faultpoint"
	"github.com/convsync/convsync/internal/secrets"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/lock"
	"github.com/convsync/convsync/sink/runs"
)

// Object storage settings.
const (
	// partSize is the part size of a multipart upload (and what an upload
	// buffers per concurrent part); S3 needs at least 5 MiB.
	partSize = 8 << 20
	// uploadParts is how many parts of one object are sent at once.
	uploadParts = 2
	// uploadAttempts bounds the attempts of one object's upload.
	uploadAttempts = 4
	// leaseTTL is how long a lease object holds the prefix for a run that
	// stopped renewing it (a holder that died on another machine);
	// leaseRenew is how often a live run renews it.
	leaseTTL   = 2 * time.Minute
	leaseRenew = 30 * time.Second
	// metaRunID is the object metadata naming the run that wrote it.
	metaRunID = "convsync-run-id"
	// leaseKey is the lease object, under the prefix.
	leaseKey = "_convsync/lease.json"
)

// IsBucketURL reports whether location names object storage rather than
// a local directory.
func IsBucketURL(location string) bool {
	for _, s := range []string{"s3://", "gs://", "azblob://"} {
		if strings.HasPrefix(location, s) {
			return true
		}
	}
	return false
}

// Bucket is a dataset root in object storage, one of
//
//	s3://BUCKET/PREFIX?region=...&endpoint=...&use_path_style=true
//	gs://BUCKET/PREFIX
//	azblob://CONTAINER/PREFIX
//
// with the layout of a local root under PREFIX, reached through
// gocloud.dev/blob with each provider's standard credential chain. Each
// partition is one object, written by one PUT or one multipart upload that
// completes only when the whole file is sent, so a reader sees the old
// object or the new one; an upload that fails is aborted. Its lock is a
// flock in a local control folder and a lease object in the bucket.
type Bucket struct {
	location string // normalised: scheme://bucket/prefix?sorted options
	open     string // the gocloud URL
	prefix   string // "PREFIX/" or ""
	control  string
	scrub    *secrets.Scrubber
	log      zerolog.Logger

	mu     sync.Mutex
	b      *blob.Bucket
	lease  *lease
	closed bool
}

// NewBucket parses a bucket URL; control is the local folder holding the
// output's lock and publish pointers.
func NewBucket(raw, controlRoot string, log zerolog.Logger) (*Bucket, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%w: %q is not a bucket URL like s3://BUCKET/PREFIX", ErrNotDataset, raw)
	}
	q := u.Query()
	if q.Has("prefix") {
		return nil, fmt.Errorf("%w: %s: give the prefix as the URL's path, not as ?prefix=", ErrNotDataset, raw)
	}
	prefix := strings.Trim(u.Path, "/")
	location := u.Scheme + "://" + u.Host
	if prefix != "" {
		location += "/" + prefix
		prefix += "/"
	}
	if len(q) > 0 {
		location += "?" + q.Encode()
	}
	// The prefix is put before every key here, not given to gocloud: the
	// keys of S3's unfinished uploads are the full keys.
	openURL := u.Scheme + "://" + u.Host
	if len(q) > 0 {
		openURL += "?" + q.Encode()
	}
	sum := sha256.Sum256([]byte(location))
	b := &Bucket{location: location, open: openURL, prefix: prefix,
		control: filepath.Join(controlRoot, "bucket-"+hex.EncodeToString(sum[:8])),
		scrub:   storageSecrets(), log: log.With().Str("output", "parquet").Str("bucket", location).Logger()}
	return b, nil
}

// storageSecrets gathers every storage credential of the environment, so
// that none appears in an error or a log line.
func storageSecrets() *secrets.Scrubber {
	env := os.Getenv
	forms := [][]string{
		secrets.Forms(env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")),
		secrets.Forms("", env("AWS_SESSION_TOKEN")),
		secrets.Forms(env("AZURE_STORAGE_ACCOUNT"), env("AZURE_STORAGE_KEY")),
		secrets.Forms("", env("AZURE_STORAGE_SAS_TOKEN")),
		secrets.Forms("", env("AZURE_STORAGE_CONNECTION_STRING")),
	}
	if path := env("GOOGLE_APPLICATION_CREDENTIALS"); path != "" {
		if b, err := os.ReadFile(path); err == nil {
			var creds map[string]any
			if json.Unmarshal(b, &creds) == nil {
				for _, k := range []string{"private_key", "private_key_id", "client_secret", "refresh_token"} {
					if v, ok := creds[k].(string); ok {
						forms = append(forms, secrets.Forms("", v))
					}
				}
			}
		}
	}
	return secrets.NewScrubber(forms...)
}

// Location is the bucket URL, normalised (options sorted).
func (b *Bucket) Location() string { return b.location }

// ControlDir is the local folder holding convsync's own files for this
// output.
func (b *Bucket) ControlDir() string { return b.control }

// bucket opens the bucket once.
func (b *Bucket) bucket(ctx context.Context) (*blob.Bucket, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b != nil {
		return b.b, nil
	}
	bk, err := blob.OpenBucket(ctx, b.open)
	if err != nil {
		return nil, b.wrap("open", err)
	}
	b.b = bk
	return bk, nil
}

// wrap names what failed, in one line, without any credential.
func (b *Bucket) wrap(op string, err error) error {
	text := b.scrub.Scrub(err.Error())
	if i := strings.IndexAny(text, "\n"); i > 0 {
		text = text[:i]
	}
	return &storageError{op: op, bucket: b.location, text: text, code: gcerrors.Code(err), err: err}
}

type storageError struct {
	op, bucket, text string
	code             gcerrors.ErrorCode
	err              error
}

func (e *storageError) Error() string {
	return fmt.Sprintf("%s %s: %s", e.op, e.bucket, e.text)
}

// Unwrap keeps the gocloud error matchable (its text is never shown).
func (e *storageError) Unwrap() error { return e.err }

// denied reports whether err is the storage refusing the credentials.
func denied(err error) bool {
	if gcerrors.Code(err) == gcerrors.PermissionDenied {
		return true
	}
	s := err.Error()
	for _, m := range []string{"StatusCode: 403", "status code 403", "403 Forbidden", "AccessDenied", "SignatureDoesNotMatch",
		"InvalidAccessKeyId", "AuthorizationFailure", "AuthenticationFailed", "Forbidden"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// Check refuses, before anything is fetched, a bucket that does not exist
// or that these credentials cannot list and write, and aborts the
// unfinished uploads a killed run may have left under the prefix.
func (b *Bucket) Check(ctx context.Context) error {
	if err := os.MkdirAll(b.control, 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrNotDataset, err)
	}
	bk, err := b.bucket(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotDataset, err)
	}
	ok, err := bk.IsAccessible(ctx)
	switch {
	case err != nil && denied(err):
		return fmt.Errorf("%w: access to %s is denied with these credentials", ErrNotDataset, b.location)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrNotDataset, b.wrap("reach", err))
	case !ok:
		return fmt.Errorf("%w: the bucket of %s does not exist", ErrNotDataset, b.location)
	}
	if _, _, err := bk.ListPage(ctx, blob.FirstPageToken, 1, nil); err != nil {
		if denied(err) {
			return fmt.Errorf("%w: listing %s is denied with these credentials", ErrNotDataset, b.location)
		}
		return fmt.Errorf("%w: %w", ErrNotDataset, b.wrap("list", err))
	}
	probe := "_convsync/write-check-" + randomID()
	if err := bk.Upload(ctx, probe, strings.NewReader("convsync"), &blob.WriterOptions{ContentType: "text/plain"}); err != nil {
		if denied(err) {
			return fmt.Errorf("%w: writing to %s is denied with these credentials", ErrNotDataset, b.location)
		}
		return fmt.Errorf("%w: %w", ErrNotDataset, b.wrap("write", err))
	}
	if err := bk.Delete(ctx, probe); err != nil {
		return fmt.Errorf("%w: %w", ErrNotDataset, b.wrap("delete", err))
	}
	return b.abortUnfinished(ctx)
}

// abortUnfinished aborts the unfinished multipart uploads of the
// dataset's objects (S3 keeps and bills them until aborted; GCS and Azure
// expire theirs).
func (b *Bucket) abortUnfinished(ctx context.Context) error {
	bk, err := b.bucket(ctx)
	if err != nil {
		return err
	}
	var c *s3.Client
	if !bk.As(&c) {
		return nil
	}
	name := strings.TrimPrefix(b.open, "s3://")
	name, _, _ = strings.Cut(name, "?")
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(name), Prefix: aws.String(b.prefix)}
	for {
		out, err := c.ListMultipartUploads(ctx, in)
		if err != nil {
			return b.wrap("list the unfinished uploads of", err)
		}
		for _, u := range out.Uploads {
			key := strings.TrimPrefix(aws.ToString(u.Key), b.prefix)
			if !ours(key) {
				continue
			}
			if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(name), Key: u.Key, UploadId: u.UploadId}); err != nil {
				return b.wrap("abort an unfinished upload in", err)
			}
			b.log.Info().Str("key", key).Msg("aborted an unfinished upload a killed run left")
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// ours reports whether a key (under the prefix) is one convsync writes.
func ours(key string) bool {
	if strings.HasPrefix(key, RunsDir+"/") || strings.HasPrefix(key, "_convsync/") {
		return true
	}
	for _, t := range schemas.All {
		if strings.HasPrefix(key, t.Name+"/snapshot_date=") && strings.HasSuffix(key, "/"+PartFile) {
			return true
		}
	}
	return false
}

// Prepare checks, before the publish decision, that the run still holds
// the bucket's lease.
func (b *Bucket) Prepare(ctx context.Context) error {
	b.mu.Lock()
	l := b.lease
	b.mu.Unlock()
	if l == nil {
		return nil
	}
	return l.verify(ctx)
}

// Publish uploads each table's staged file (files: table name to path) as
// its partition object of run's date, then the run record. An object that
// already holds run's data (an earlier attempt of the same publish) is not
// sent again.
func (b *Bucket) Publish(ctx context.Context, tables []schemas.Table, files map[string]string, run runs.Record) error {
	bk, err := b.bucket(ctx)
	if err != nil {
		return err
	}
	return publish(ctx, bucketFiles{b, bk}, b.log, tables, files, run)
}

// bucketFiles puts a publish's files into a bucket as objects.
type bucketFiles struct {
	b  *Bucket
	bk *blob.Bucket
}

func (f bucketFiles) putTable(ctx context.Context, table, src string, run runs.Record) error {
	key := f.b.prefix + table + "/" + Partition(run.SnapshotDate) + "/" + PartFile
	return f.b.upload(ctx, f.bk, key, src, "application/vnd.apache.parquet", run.RunID)
}

func (f bucketFiles) putRunRecord(ctx context.Context, run runs.Record, rec []byte) error {
	return f.b.uploadBytes(ctx, f.bk, f.b.prefix+RunsDir+"/"+run.RunID+".json", rec, "application/json", run.RunID)
}

// upload sends the file at path as key, unless key already holds runID's
// data, retrying a failed upload (each attempt replaces the object whole
// or not at all), and aborting what a failed attempt left unfinished.
func (b *Bucket) upload(ctx context.Context, bk *blob.Bucket, key, path, contentType, runID string) error {
	if a, err := bk.Attributes(ctx, key); err == nil && a.Metadata[metaRunID] == runID {
		st, serr := os.Stat(path)
		if serr != nil || st.Size() == a.Size {
			return nil // sent by an earlier attempt of this publish
		}
	}
	var last error
	for attempt := range uploadAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(time.Duration(1<<attempt) * 500 * time.Millisecond):
			}
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = bk.Upload(ctx, key, &faultReader{r: f, step: "upload-part:" + strings.TrimPrefix(key, b.prefix)}, b.writerOptions(contentType, runID))
		f.Close()
		if err == nil {
			return nil
		}
		last = b.wrap("upload to", err)
		b.log.Warn().Str("key", strings.TrimPrefix(key, b.prefix)).Int("attempt", attempt+1).Str("error", last.Error()).Msg("upload failed")
		if aerr := b.abortUnfinished(context.WithoutCancel(ctx)); aerr != nil {
			b.log.Warn().Str("error", aerr.Error()).Msg("abort the failed upload")
		}
		if ctx.Err() != nil || denied(err) || gcerrors.Code(err) == gcerrors.NotFound {
			break
		}
	}
	return last
}

func (b *Bucket) uploadBytes(ctx context.Context, bk *blob.Bucket, key string, data []byte, contentType, runID string) error {
	var last error
	for attempt := range uploadAttempts {
		if attempt > 0 {
			time.Sleep(time.Duration(1<<attempt) * 500 * time.Millisecond)
		}
		err := bk.Upload(ctx, key, bytes.NewReader(data), b.writerOptions(contentType, runID))
		if err == nil {
			return nil
		}
		last = b.wrap("upload to", err)
		if ctx.Err() != nil || denied(err) {
			break
		}
	}
	return last
}

func (b *Bucket) writerOptions(contentType, runID string) *blob.WriterOptions {
	return &blob.WriterOptions{ContentType: contentType, BufferSize: partSize, MaxConcurrency: uploadParts,
		Metadata: map[string]string{metaRunID: runID}}
}

// Close closes the bucket, releasing the lease if the run holds it.
func (b *Bucket) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.lease != nil {
		b.lease.release()
		b.lease = nil
	}
	if b.b != nil {
		return b.b.Close()
	}
	return nil
}

// Lease takes the bucket's lease for the run (see lease), or fails with
// lock.ErrBusy when another live run holds it.
func (b *Bucket) Lease(ctx context.Context, runID string) error {
	bk, err := b.bucket(ctx)
	if err != nil {
		return err
	}
	l := &lease{b: b, bk: bk, key: b.prefix + leaseKey, holder: leaseHolder{RunID: runID, ID: randomID(), Host: hostname(), PID: os.Getpid()}}
	if err := l.take(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	b.lease = l
	b.mu.Unlock()
	return nil
}

// lease is a lock object in the bucket, for runs on other machines (the
// local flock covers this one): created only if absent, renewed while the
// run lives, deleted at its end, and taken over once a holder stopped
// renewing it for leaseTTL, or at once when its holder was a process of
// this machine that is gone.
type lease struct {
	b      *Bucket
	bk     *blob.Bucket
	key    string
	holder leaseHolder
	stop   chan struct{}
	done   chan struct{}
}

type leaseHolder struct {
	RunID   string    `json:"run_id"`
	ID      string    `json:"id"`
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Renewed time.Time `json:"renewed"`
}

func (l *lease) write(ctx context.Context, ifNotExist bool) error {
	l.holder.Renewed = time.Now().UTC()
	b, _ := json.Marshal(l.holder)
	return l.bk.Upload(ctx, l.key, bytes.NewReader(b), &blob.WriterOptions{ContentType: "application/json", IfNotExist: ifNotExist})
}

func (l *lease) read(ctx context.Context) (leaseHolder, error) {
	var h leaseHolder
	data, err := l.bk.ReadAll(ctx, l.key)
	if err != nil {
		return h, err
	}
	err = json.Unmarshal(data, &h)
	return h, err
}

func (l *lease) take(ctx context.Context) error {
	for attempt := 0; attempt < 2; attempt++ {
		err := l.write(ctx, true)
		if err == nil {
			l.stop, l.done = make(chan struct{}), make(chan struct{})
			go l.renew()
			return nil
		}
		if gcerrors.Code(err) != gcerrors.FailedPrecondition {
			return l.b.wrap("take the lease of", err)
		}
		cur, rerr := l.read(ctx)
		if rerr != nil && gcerrors.Code(rerr) == gcerrors.NotFound {
			continue // released meanwhile
		}
		stale := rerr != nil || time.Since(cur.Renewed) > leaseTTL || (cur.Host == l.holder.Host && !processAlive(cur.PID))
		if !stale {
			return fmt.Errorf("%w (run %s on %s, pid %d, renewed %s ago)", lock.ErrBusy, cur.RunID, cur.Host, cur.PID,
				time.Since(cur.Renewed).Round(time.Second))
		}
		l.b.log.Warn().Str("run_id", cur.RunID).Str("host", cur.Host).Msg("taking over the bucket lease of a run that is gone")
		if err := l.bk.Delete(ctx, l.key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return l.b.wrap("take over the lease of", err)
		}
	}
	return fmt.Errorf("%w: the lease of %s changed hands while it was taken", lock.ErrBusy, l.b.location)
}

func (l *lease) renew() {
	defer close(l.done)
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), leaseRenew)
			err := l.verify(ctx)
			if err == nil {
				err = l.write(ctx, false)
			}
			cancel()
			if err != nil {
				l.b.log.Warn().Str("error", l.b.scrub.Scrub(err.Error())).Msg("renew the bucket lease")
			}
		}
	}
}

// verify fails when the lease object is no longer this run's.
func (l *lease) verify(ctx context.Context) error {
	cur, err := l.read(ctx)
	if err != nil {
		return fmt.Errorf("%w: the lease of %s is gone: %w", lock.ErrBusy, l.b.location, l.b.wrap("read", err))
	}
	if cur.ID != l.holder.ID {
		return fmt.Errorf("%w: run %s on %s took over the lease of %s", lock.ErrBusy, cur.RunID, cur.Host, l.b.location)
	}
	return nil
}

func (l *lease) release() {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if l.verify(ctx) == nil {
		_ = l.bk.Delete(ctx, l.key)
	}
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// faultReader hits a fault point once its reader has given three parts
// (past S3's 16 MiB multipart threshold): a test can stop a process in the
// middle of a multipart upload.
type faultReader struct {
	r    io.Reader
	n    int64
	step string
}

func (f *faultReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if at := int64(3 * partSize); f.n <= at && f.n+int64(n) > at {
		if ferr := faultpoint.Hit(f.step); ferr != nil {
			return n, ferr
		}
	}
	f.n += int64(n)
	return n, err
}
