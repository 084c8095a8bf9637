#!/usr/bin/env bash
# Installs (first run on a machine) and smoke-starts the storage servers that
# internal/storagetest runs for bucket-output tests: versitygw (S3) and
# fake-gcs-server (GCS) built with the Go toolchain, Azurite (Azure) with npm,
# all into ${CONVSYNC_TESTBIN:-$(os.UserCacheDir)/convsync/testbin}. Tests do
# this themselves; running it first (e.g. in .ci/run before `go test ./...`)
# keeps the first build's minutes out of any one test binary's timeout.
# Fails, rather than skips, when a server cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."
CONVSYNC_REQUIRE_STORAGE=1 go test ./internal/storagetest -run '^TestSharedServer$' -count=1 -v -timeout 20m
