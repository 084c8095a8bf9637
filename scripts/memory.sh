#!/usr/bin/env bash
# Peak live heap of `convsync export` as the account grows, measured out of
# process (the simulated API runs as its own `convsync fakeapi`), from the Go
# runtime's GC trace. Usage: scripts/memory.sh [scale...]  (default 32 128 512,
# multiples of the test dataset's users and conversations per service).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)/convsync
go build -o "$bin" ./cmd/convsync
port=18097
for sc in "${@:-32 128 512}"; do
  for s in $sc; do
    out=$(mktemp -d)
    "$bin" fakeapi --listen 127.0.0.1:$port --demo-data=false --users $((60 * s)) --conversations $((130 * s)) > "$out/fakeapi.txt" 2>&1 &
    fp=$!
    for _ in $(seq 1 120); do grep -q '^export' "$out/fakeapi.txt" && break; sleep 0.5; done
    eval "$(grep '^export' "$out/fakeapi.txt")"
    start=$(date +%s)
    GODEBUG=gctrace=1 "$bin" export --base-url http://127.0.0.1:$port --parquet "$out/pq" --progress off > "$out/summary.txt" 2> "$out/stderr.txt"
    end=$(date +%s)
    peak=$(grep -o '[0-9]*->[0-9]*->[0-9]* MB' "$out/stderr.txt" | awk -F'->' '{split($3, a, " "); if (a[1] + 0 > m) m = a[1] + 0} END {print m}')
    rows=$(awk '/ rows$/ {gsub(",", "", $2); n += $2} END {print n}' "$out/summary.txt")
    echo "scale x$s: $rows rows in $((end - start)) s, peak live heap $peak MB"
    kill $fp; wait $fp 2>/dev/null || true
    rm -rf "$out"
  done
done
