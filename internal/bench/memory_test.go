package bench

import (
	"testing"
	"time"
)

// memoryCases are the demo dataset and ten times its users and
// conversations per service.
var memoryCases = []struct {
	name string
	a    api
}{
	{"demo", api{}},
	{"demo-x10", api{sizes: sizes{Users: 4000, Conversations: 8000}}},
}

// BenchmarkMemory reports the peak RSS of `convsync export` (both
// outputs, default flags, no latency) at the demo size and at ten times
// its users and conversations, and their ratio.
func BenchmarkMemory(b *testing.B) {
	bin, _ := tools(b)
	var runs [2]export
	for range b.N {
		for i, c := range memoryCases {
			s := startServer(b, bin, c.a)
			runs[i] = runExport(b, bin, s)
		}
	}
	small, large := runs[0], runs[1]
	ratio := float64(large.MaxRSSKiB) / float64(small.MaxRSSKiB)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(mib(small.MaxRSSKiB), "demo-peak-RSS-MiB")
	b.ReportMetric(mib(large.MaxRSSKiB), "x10-peak-RSS-MiB")
	b.ReportMetric(ratio, "x10/demo")
	b.ReportMetric(float64(small.Failed+large.Failed), "failed-runs")
	for i, e := range runs {
		b.Logf("%s: %d rows (%d participants) in %s, %s, CPU %s",
			memoryCases[i].name, e.rows(), e.Rows["participants"], e.Wall.Round(time.Millisecond), e.rss(),
			e.CPU().Round(time.Millisecond))
	}
	b.Logf("x10/demo peak RSS: %.2f", ratio)
	addRow("Memory (no latency, DuckDB + Parquet)",
		[]string{"demo rows", "demo peak RSS MiB", "x10 rows", "x10 peak RSS MiB", "x10/demo", "x10 wall s", "failed runs", "load"},
		d(small.rows()), f0(mib(small.MaxRSSKiB)), d(large.rows()), f0(mib(large.MaxRSSKiB)), f2(ratio), secs(large.Wall),
		d(int64(small.Failed+large.Failed)), f1(large.Load))
}
