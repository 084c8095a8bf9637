package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/internal/version"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
	"github.com/convsync/convsync/transform"
)

var (
	peakHeapProfile = flag.String("peakheapprofile", "", "BenchmarkInProcess: write a heap profile taken at the export's peak live heap to this `file`")
	clientTrace     = flag.String("clienttrace", "", "BenchmarkInProcess: write the client's counters (requests, throttled, limit, in flight) every 100 ms to this `file`")
	inProcess       = flag.Bool("inprocess", false, "run BenchmarkInProcess without a profile flag")
)

// profiling reports whether the test binary was asked for a profile or a
// trace, or -inprocess was given: BenchmarkInProcess runs only then, so
// that -bench . runs the out-of-process benchmarks alone.
func profiling() bool {
	if *inProcess || *peakHeapProfile != "" || *clientTrace != "" {
		return true
	}
	for _, name := range []string{"test.cpuprofile", "test.memprofile", "test.blockprofile", "test.mutexprofile", "test.trace"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return true
		}
	}
	return false
}

// inProcessCases are the accounts BenchmarkInProcess can profile.
var inProcessCases = []struct {
	name string
	a    api
}{
	{"cpu-path", cpuPath},
	{"demo", api{}},
	{"demo-x10", memoryCases[1].a},
	{"limit4", throughputCases[0]},
	{"limit16", throughputCases[1]},
	{"limit64", throughputCases[2]},
	{"limit16-other8", throughputCases[3]},
}

// BenchmarkInProcess is a profiling copy of `convsync export` with default
// flags (the client, outputs and job wired as cmd/convsync wires them),
// run in the test process against `convsync fakeapi` in its own process,
// so that -cpuprofile and -memprofile see the export alone:
//
//	go test ./internal/bench -run '^$' -bench 'InProcess/cpu-path' -benchtime 1x -cpuprofile cpu.out
//	go test ./internal/bench -run '^$' -bench 'InProcess/demo-x10' -benchtime 1x -args -peakheapprofile heap.out
//	go test ./internal/bench -run '^$' -bench 'InProcess/limit4' -benchtime 1x -args -clienttrace trace.txt
//
// It reports the peak live heap (runtime/metrics, sampled every 50 ms);
// -peakheapprofile writes a heap profile taken near that peak. It runs only
// with a profile flag (or -args -inprocess).
func BenchmarkInProcess(b *testing.B) {
	if !profiling() {
		b.Skip("a profiling copy: give -cpuprofile, -memprofile, -args -peakheapprofile FILE, -args -clienttrace FILE or -args -inprocess")
	}
	for _, c := range inProcessCases {
		b.Run(c.name, func(b *testing.B) {
			bin, _ := tools(b)
			s := startServer(b, bin, c.a)
			var rows int64
			var peak uint64
			var cpu time.Duration
			b.ResetTimer()
			for range b.N {
				dir := b.TempDir()
				stop := watchHeap(b, *peakHeapProfile)
				t0 := cpuTime()
				start := time.Now()
				sum := exportInProcess(b, s, filepath.Join(dir, "x.duckdb"), filepath.Join(dir, "pq"))
				wall := time.Since(start)
				cpu = cpuTime() - t0
				peak = stop()
				rows = sum.Run.Rows["participants"]
				b.ReportMetric(wall.Seconds(), "wall-s")
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(cpu.Seconds(), "cpu-s")
			b.ReportMetric(float64(rows)/cpu.Seconds(), "participants/cpu-s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-live-heap-MiB")
		})
	}
}

// exportInProcess does what `convsync export --base-url URL --duckdb db
// --parquet pq --progress off` does.
func exportInProcess(b *testing.B, s *server, db, pq string) jobs.Summary {
	ctx := context.Background()
	log := zerolog.Nop()
	cl, err := extract.New(extract.Config{
		BaseURL:        s.URL,
		Credentials:    extract.Credentials{AccountSID: s.AccountSID, AuthToken: s.AuthToken},
		Concurrency:    extract.DefaultConcurrency,
		RequestTimeout: extract.DefaultRequestTimeout,
		MaxRetries:     extract.DefaultMaxRetries,
		Logger:         log,
	})
	if err != nil {
		b.Fatal(err)
	}
	if *clientTrace != "" {
		defer traceClient(b, cl, *clientTrace)()
	}
	snapshot := time.Now().UTC().Truncate(24 * time.Hour)
	fp := jobs.Fingerprint(jobs.Inputs{BaseURL: cl.BaseURL(), PII: transform.PIIKeep, Date: snapshot.Format(time.DateOnly),
		Outputs: []string{db, pq}})
	runID := time.Now().UTC().Format("20060102T150405Z") + "-bench0"
	outs, err := sink.Open(ctx, sink.Config{
		DuckDB: db, Parquet: pq, LockWait: 5 * time.Minute, SnapshotDate: snapshot,
		Command: "export", RunID: runID, Tables: schemas.Export, Fingerprint: fp, Checkpoints: true,
		Keep: jobs.ResumedTables, Logger: log,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer outs.Close()
	sched := jobs.DefaultSchedule
	sum, err := jobs.Export(ctx, cl, outs, jobs.Config{
		RunID: outs.RunID(), SnapshotDate: snapshot, Version: version.Version(), Workers: extract.DefaultConcurrency,
		Policy: transform.Policy{Mode: transform.PIIKeep}, Logger: log, Fingerprint: fp, Checkpoints: &sched,
	})
	if err != nil {
		b.Fatal(err)
	}
	return sum
}

// traceClient writes cl's counters every 100 ms until stopped.
func traceClient(b *testing.B, cl *extract.Client, path string) (stop func()) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		fmt.Fprintln(f, "t_s requests retries throttled limit inflight peak")
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			st := cl.Stats()
			fmt.Fprintf(f, "%.1f %d %d %d %d %d %d\n", time.Since(start).Seconds(), st.Requests, st.Retries, st.Throttled,
				st.Limit, st.InFlight, st.PeakInFlight)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		f.Close()
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// watchHeap samples the live heap (/gc/heap/live:bytes) every 50 ms until
// the returned stop is called, which returns the peak; with path set it
// keeps a heap profile taken whenever the live heap reached a new high.
func watchHeap(b *testing.B, path string) (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			metrics.Read(sample)
			v := sample[0].Value.Uint64()
			if v <= peak {
				continue
			}
			grown := v > peak+peak/20
			peak = v
			if path != "" && grown {
				writeHeapProfile(b, path)
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}

func writeHeapProfile(b *testing.B, path string) {
	runtime.GC() // the profile shows the live heap as of the last GC
	f, err := os.Create(path)
	if err != nil {
		b.Error(err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Error(err)
	}
}
