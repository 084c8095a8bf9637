package bench

import (
	"testing"
	"time"
)

// cpuPath is a participant-heavy account: 5 services of 400 conversations
// with about 100 participants each (~180,000 participants), 20 users per
// service.
var cpuPath = api{sizes: sizes{Services: 5, Users: 20, Conversations: 400, Participants: 100, Large: 100, Busy: 10}}

// BenchmarkCPUPath runs `convsync export` (both outputs, default flags)
// against a participant-heavy account with no latency and no account
// limit, and reports participant rows per CPU second of the export process
// (user + system time from its rusage) and CPU µs per participant row.
func BenchmarkCPUPath(b *testing.B) {
	bin, _ := tools(b)
	var e export
	for range b.N {
		s := startServer(b, bin, cpuPath)
		e = runExport(b, bin, s)
	}
	reportCPU(b, e)
}

func reportCPU(b *testing.B, e export) {
	parts := e.Rows["participants"]
	perCPU := float64(parts) / e.CPU().Seconds()
	usPerRow := float64(e.CPU().Microseconds()) / float64(parts)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(e.Wall.Seconds(), "wall-s")
	b.ReportMetric(e.CPU().Seconds(), "cpu-s")
	b.ReportMetric(perCPU, "participants/cpu-s")
	b.ReportMetric(usPerRow, "cpu-us/participant")
	b.ReportMetric(float64(e.rows())/e.Wall.Seconds(), "rows/s")
	b.ReportMetric(mib(e.MaxRSSKiB), "peak-RSS-MiB")
	b.ReportMetric(float64(e.Failed), "failed-runs")
	b.Logf("%d participants (%d rows in all, %d requests): wall %s, CPU %s (user %s, sys %s): %.0f participants per CPU second, %.2f CPU µs per participant; %s; failed runs %d",
		parts, e.rows(), e.Requests, e.Wall.Round(time.Millisecond), e.CPU().Round(time.Millisecond), e.User.Round(time.Millisecond),
		e.Sys.Round(time.Millisecond), perCPU, usPerRow, e.rss(), e.Failed)
	addRow("CPU path (participant-heavy account, no latency, DuckDB + Parquet)",
		[]string{"participants", "rows", "wall s", "CPU s (user+sys)", "participants/CPU-s", "CPU µs/participant", "peak RSS MiB", "failed runs", "load"},
		d(parts), d(e.rows()), secs(e.Wall), secs(e.CPU()), f0(perCPU), f2(usPerRow), f0(mib(e.MaxRSSKiB)), d(int64(e.Failed)), f1(e.Load))
}
