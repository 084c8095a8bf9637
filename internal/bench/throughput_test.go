package bench

import (
	"fmt"
	"testing"
	"time"
)

// throughputCases are account limits and latencies with about the same
// bound, and the limit-16 account with another application holding 8 of
// its slots.
var throughputCases = []api{
	{MaxInFlight: 4, Latency: 7500 * time.Microsecond},
	{MaxInFlight: 16, Latency: 30 * time.Millisecond},
	{MaxInFlight: 64, Latency: 120 * time.Millisecond},
	{MaxInFlight: 16, OtherInFlight: 8, Latency: 30 * time.Millisecond},
}

func (a api) name() string {
	n := fmt.Sprintf("limit=%d,latency=%s", a.MaxInFlight, a.Latency)
	if a.OtherInFlight > 0 {
		n += fmt.Sprintf(",other=%d", a.OtherInFlight)
	}
	return n
}

// BenchmarkThroughput runs `convsync export` (default flags) against
// `convsync fakeapi --demo-data --latency L --max-in-flight C
// [--other-in-flight K]`, each its own process, and compares its wall time
// with the bound R_min × L / (C − K): the minimal number of requests
// (testkit.Requests on the same dataset) at the account's concurrency.
func BenchmarkThroughput(b *testing.B) {
	for _, a := range throughputCases {
		b.Run(a.name(), func(b *testing.B) {
			bin, _ := tools(b)
			rmin := minimalRequests(b, a.sizes)
			var e export
			var svc time.Duration
			for range b.N {
				s := startServer(b, bin, a)
				svc = s.serviceTime(b, 40)
				e = runExport(b, bin, s)
			}
			room := float64(a.MaxInFlight - a.OtherInFlight)
			bound := time.Duration(float64(rmin) * float64(a.Latency) / room)
			ratio := e.Wall.Seconds() / bound.Seconds()
			// The same bound with the round trip the simulator really
			// takes (see serviceTime).
			boundSvc := time.Duration(float64(rmin) * float64(svc) / room)
			ratioSvc := e.Wall.Seconds() / boundSvc.Seconds()
			share := 100 * float64(e.Throttled) / float64(e.Requests)
			reqs := float64(e.Requests) / float64(rmin)
			rowsPerSec := float64(e.rows()) / e.Wall.Seconds()
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(e.Wall.Seconds(), "wall-s")
			b.ReportMetric(bound.Seconds(), "bound-s")
			b.ReportMetric(ratio, "wall/bound")
			b.ReportMetric(ratioSvc, "wall/bound-measured-rtt")
			b.ReportMetric(share, "429-%")
			b.ReportMetric(reqs, "requests/minimal")
			b.ReportMetric(rowsPerSec, "rows/s")
			b.ReportMetric(mib(e.MaxRSSKiB), "peak-RSS-MiB")
			b.ReportMetric(float64(e.Failed), "failed-runs")
			b.Logf("C=%d K=%d L=%s: wall %s, bound %s (R_min %d), wall/bound %.3f; simulator round trip %s, bound with it %s, wall/that %.3f; requests %d (%.4fx minimal, %d retries), 429 %d (%.2f%%); "+
				"%.0f rows/s; %s; CPU %s; in flight at most %d, limit found %d; failed runs %d",
				a.MaxInFlight, a.OtherInFlight, a.Latency, e.Wall.Round(time.Millisecond), bound.Round(time.Millisecond), rmin, ratio,
				svc.Round(time.Microsecond), boundSvc.Round(time.Millisecond), ratioSvc,
				e.Requests, reqs, e.Retries, e.Throttled, share, rowsPerSec, e.rss(),
				e.CPU().Round(time.Millisecond), e.PeakInFlight, e.LimitFound, e.Failed)
			addRow("Throughput (demo dataset, default flags)",
				[]string{"C", "K", "L", "wall s", "bound s", "wall/bound", "sim. RTT ms", "wall/bound at RTT", "requests", "minimal", "req/min", "429", "429 %",
					"rows/s", "peak RSS MiB", "in flight max", "limit found", "failed runs", "load"},
				d(int64(a.MaxInFlight)), d(int64(a.OtherInFlight)), a.Latency.String(), secs(e.Wall), secs(bound), f3(ratio),
				f2(float64(svc.Microseconds())/1000), f3(ratioSvc),
				d(e.Requests), d(rmin), f3(reqs), d(e.Throttled), f2(share), f0(rowsPerSec), f0(mib(e.MaxRSSKiB)),
				d(int64(e.PeakInFlight)), d(int64(e.LimitFound)), d(int64(e.Failed)), f1(e.Load))
		})
	}
}
