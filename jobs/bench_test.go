package jobs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/convsync/convsync/internal/fakeapi"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
)

// liveHeap returns the heap marked live by the last GC cycle: garbage not
// yet collected is not counted, so the figure does not depend on GOGC's
// headroom over everything else in the process.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// heapPeak samples the live heap until stop is called and returns the
// highest value seen above the baseline taken at the start.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	base := liveHeap()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if h := liveHeap(); h > base && h-base > peak.Load() {
					peak.Store(h - base)
				}
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak.Load() }
}

// BenchmarkExportMemory exports accounts of growing size into Parquet and
// reports rows per second and the exporter's peak live heap above the
// baseline (the simulated account lives in the same process and is
// excluded).
// Flat memory shows as peak-heap-MB staying put while rows grow.
//
//	go test ./jobs -run '^$' -bench ExportMemory -benchtime 1x
func BenchmarkExportMemory(b *testing.B) {
	// Memory is bounded by the batch and row-group caps, not by the
	// account; smaller row groups than the default let the plateau show at
	// sizes a benchmark can afford.
	const rowGroupBytes = 4 << 20
	for _, scale := range []int{8, 32, 128} {
		cfg := fakeapi.DefaultConfig()
		cfg.ConversationsPerService *= scale
		cfg.UsersPerService *= scale
		b.Run(fmt.Sprintf("x%d", scale), func(b *testing.B) {
			ds := fakeapi.NewDataset(cfg)
			srv, err := fakeapi.Start("127.0.0.1:0", fakeapi.Options{Dataset: ds})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			cl := client(b, srv, 8)
			var rows int64
			var peak uint64
			b.ResetTimer()
			for i := range b.N {
				dir := b.TempDir()
				p, err := sink.NewParquet(filepath.Join(dir, "pq"), schemas.Export, fmt.Sprint("run-", i), time.Now(), sink.WithRowGroupBytes(rowGroupBytes))
				if err != nil {
					b.Fatal(err)
				}
				stop := heapPeak()
				sum, err := jobs.Export(context.Background(), cl, p, jobs.Config{RunID: fmt.Sprint("run-", i), SnapshotDate: time.Now(), Concurrency: 8})
				peak = max(peak, stop())
				if err != nil {
					b.Fatal(err)
				}
				p.Close()
				rows = 0
				for _, n := range sum.Run.Rows {
					rows += n
				}
			}
			b.ReportMetric(float64(rows), "rows")
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		})
	}
}

// BenchmarkExportLatencyBound runs an export against an API that answers
// every request after a fixed latency and reports the achieved request
// rate as a fraction of the bound concurrency/latency: how well the worker
// pools keep the allowed requests in flight.
//
//	go test ./jobs -run '^$' -bench LatencyBound -benchtime 1x
func BenchmarkExportLatencyBound(b *testing.B) {
	const latency = 10 * time.Millisecond
	for _, conc := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			cfg := fakeapi.DefaultConfig()
			cfg.UsersPerService *= 4 // long enough that start-up and the tail weigh little
			cfg.ConversationsPerService *= 4
			ds := fakeapi.NewDataset(cfg)
			srv, err := fakeapi.Start("127.0.0.1:0", fakeapi.Options{Dataset: ds, Faults: fakeapi.Faults{Latency: latency}})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			cl := client(b, srv, conc)
			var reqs int64
			b.ResetTimer()
			for i := range b.N {
				p, err := sink.NewParquet(b.TempDir(), schemas.Export, fmt.Sprint("run-", i), time.Now())
				if err != nil {
					b.Fatal(err)
				}
				before := cl.Stats().Requests
				if _, err := jobs.Export(context.Background(), cl, p, jobs.Config{RunID: fmt.Sprint("run-", i), SnapshotDate: time.Now(), Concurrency: conc}); err != nil {
					b.Fatal(err)
				}
				p.Close()
				reqs += cl.Stats().Requests - before
			}
			rate := float64(reqs) / b.Elapsed().Seconds()
			bound := float64(conc) / latency.Seconds()
			b.ReportMetric(rate, "req/s")
			b.ReportMetric(rate/bound, "of-bound")
		})
	}
}
