package bench

import (
	"testing"
	"time"
)

// BenchmarkSDKBaseline compares convsync with an exporter on Twilio's
// official twilio-go SDK as its documentation shows it (sdkbaseline:
// List calls, PageSize at the maximum, sequential, rows only counted):
//
//   - wall: both against the throughput benchmark's limit-16 account
//     (demo dataset, 30 ms latency, --max-in-flight 16); the ratio of the
//     SDK's wall time to convsync's;
//   - cpu: both against the CPU-path account (no latency); CPU µs per
//     participant row of each process, and their ratio.
//
// Each sub-benchmark runs convsync again rather than reuse another
// benchmark's run, so that it stands alone.
func BenchmarkSDKBaseline(b *testing.B) {
	b.Run("wall", func(b *testing.B) {
		bin, sdk := tools(b)
		a := throughputCases[1] // C=16, L=30 ms
		rmin := minimalRequests(b, a.sizes)
		var e export
		var r sdkRun
		for range b.N {
			s := startServer(b, bin, a)
			e = runExport(b, bin, s)
			r = runSDK(b, sdk, s)
		}
		ratio := r.Wall.Seconds() / e.Wall.Seconds()
		bound := time.Duration(float64(rmin) * float64(a.Latency))
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(e.Wall.Seconds(), "convsync-wall-s")
		b.ReportMetric(r.Wall.Seconds(), "sdk-wall-s")
		b.ReportMetric(ratio, "sdk/convsync")
		b.Logf("C=%d L=%s: convsync %s (%d requests), SDK %s (%d requests, sequential bound R_min×L = %s): convsync %.1fx faster; rows convsync %v, SDK %v",
			a.MaxInFlight, a.Latency, e.Wall.Round(time.Millisecond), e.Requests, r.Wall.Round(time.Millisecond), r.Requests,
			bound.Round(time.Millisecond), ratio, e.Rows, r.Rows)
		addRow("SDK baseline, wall time (demo dataset, C=16, L=30ms)",
			[]string{"convsync wall s", "convsync requests", "SDK wall s", "SDK requests", "SDK/convsync", "load"},
			secs(e.Wall), d(e.Requests), secs(r.Wall), d(r.Requests), f1(ratio), f1(e.Load))
	})
	b.Run("cpu", func(b *testing.B) {
		bin, sdk := tools(b)
		var e export
		var r sdkRun
		for range b.N {
			s := startServer(b, bin, cpuPath)
			e = runExport(b, bin, s)
			r = runSDK(b, sdk, s)
		}
		cs := float64(e.CPU().Microseconds()) / float64(e.Rows["participants"])
		ss := float64(r.CPU().Microseconds()) / float64(r.Rows["participants"])
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(cs, "convsync-cpu-us/participant")
		b.ReportMetric(ss, "sdk-cpu-us/participant")
		b.ReportMetric(cs/ss, "convsync/sdk-cpu")
		b.Logf("CPU path: convsync %s CPU for %d participants (%.2f µs each, wall %s), SDK %s CPU for %d (%.2f µs each, wall %s): convsync/SDK %.2f",
			e.CPU().Round(time.Millisecond), e.Rows["participants"], cs, e.Wall.Round(time.Millisecond),
			r.CPU().Round(time.Millisecond), r.Rows["participants"], ss, r.Wall.Round(time.Millisecond), cs/ss)
		addRow("SDK baseline, CPU (CPU-path account, no latency)",
			[]string{"participants", "convsync CPU s", "convsync CPU µs/participant", "SDK CPU s", "SDK CPU µs/participant", "convsync/SDK", "SDK wall s", "load"},
			d(e.Rows["participants"]), secs(e.CPU()), f2(cs), secs(r.CPU()), f2(ss), f2(cs/ss), secs(r.Wall), f1(e.Load))
	})
}
