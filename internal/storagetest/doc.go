// Package storagetest runs real object-storage servers on 127.0.0.1 for
// tests of convsync's bucket output through gocloud.dev/blob (v0.47.0):
//
//	srv := storagetest.S3(t) // or GCS(t), Azure(t)
//	srv.SetEnv(t)            // credentials / emulator host, before the first blob.OpenBucket
//	b := srv.Open(t, "")     // blob.OpenBucket(srv.BucketURL("")), closed at the end of t
//
// Each call hands the test a fresh bucket (deleted, contents and all, when the
// test ends) on a server shared by the whole test binary (started once, on a
// free loopback port, killed when the binary exits). A server's first use on a
// machine installs it into os.UserCacheDir()/convsync/testbin
// (CONVSYNC_TESTBIN overrides); a missing go/node/npm or a failed install
// skips the test loudly, or fails it under CONVSYNC_REQUIRE_STORAGE=1 or
// CI=true. See NOTES.md for the findings the probes record.
//
// Servers, versions pinned here:
//
//   - S3: versitygw v1.8.0, posix backend (sidecar metadata), built with
//     `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0`
//     (CGO_ENABLED=0, its own go.mod). Root keys are this package's test
//     values. URL:
//     s3://BUCKET?endpoint=http://127.0.0.1:PORT&use_path_style=true&region=us-east-1[&prefix=P/]
//     with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in Env.
//   - GCS: fake-gcs-server v1.56.1, memory backend, built the same way. URL:
//     gs://BUCKET[?prefix=P/] with STORAGE_EMULATOR_HOST=127.0.0.1:PORT (no
//     scheme): gcsblob then talks to http://HOST/storage/v1/ without
//     credentials.
//   - Azure: Azurite 3.35.0 (the last release for Node 20), `npm ci` of
//     azurite/package-lock.json, blob service only, in memory, with
//     --skipApiVersionCheck --loose --disableTelemetry. URL:
//     azblob://CONTAINER?domain=127.0.0.1:PORT&protocol=http&localemu=true[&prefix=P/]
//     with AZURE_STORAGE_ACCOUNT=devstoreaccount1 and AZURE_STORAGE_KEY
//     (Azurite's published key) in Env.
//
// gocloud ignores a URL's path: a prefix must go in the "prefix" parameter.
// Unfinished uploads: Server.PendingUploads lists them (S3 multipart uploads,
// Azure blobs with only uncommitted blocks; GCS has no such listing) and
// Server.AbortPendingUploads aborts S3's; in convsync code, bucket.As(&c) with
// c a *s3.Client gives ListMultipartUploads / AbortMultipartUpload.
//
// Findings (gocloud v0.47.0; details in NOTES.md): a Writer whose context is
// cancelled leaves its S3 multipart upload behind (the abort is sent with the
// cancelled context); on Azure a Writer whose upload fails may panic in Close
// (fixed in gocloud v0.48.0; Bucket.Upload does not panic). Missing bucket:
// NotFound on every provider. Wrong secret: S3 Unknown (SignatureDoesNotMatch;
// PermissionDenied only for HEAD-based calls), Azurite Unknown (403
// AuthorizationFailure), GCS not applicable. WriterOptions.IfNotExist works
// on all three (FailedPrecondition), multipart included.
package storagetest
