package bench

import (
	"testing"
	"time"
)

// memoryCases are the demo dataset and ten and twenty times its users and
// conversations per service.
var memoryCases = []struct {
	name string
	a    api
}{
	{"demo", api{}},
	{"demo-x10", api{sizes: sizes{Users: 4000, Conversations: 8000}}},
	{"demo-x20", api{sizes: sizes{Users: 8000, Conversations: 16000}}},
}

// BenchmarkMemory reports the peak RSS of `convsync export` (both
// outputs, default flags, no latency) at the demo size and at ten and
// twenty times its users and conversations, and their ratios: x10/demo is
// the target's, x20/x10 shows whether memory still grows once the
// pipeline's bounds are reached.
func BenchmarkMemory(b *testing.B) {
	bin, _ := tools(b)
	var runs [3]export
	for range b.N {
		for i, c := range memoryCases {
			s := startServer(b, bin, c.a)
			runs[i] = runExport(b, bin, s)
		}
	}
	small, large, larger := runs[0], runs[1], runs[2]
	ratio := float64(large.MaxRSSKiB) / float64(small.MaxRSSKiB)
	ratio20 := float64(larger.MaxRSSKiB) / float64(large.MaxRSSKiB)
	failed := small.Failed + large.Failed + larger.Failed
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(mib(small.MaxRSSKiB), "demo-peak-RSS-MiB")
	b.ReportMetric(mib(large.MaxRSSKiB), "x10-peak-RSS-MiB")
	b.ReportMetric(mib(larger.MaxRSSKiB), "x20-peak-RSS-MiB")
	b.ReportMetric(ratio, "x10/demo")
	b.ReportMetric(ratio20, "x20/x10")
	b.ReportMetric(float64(failed), "failed-runs")
	for i, e := range runs {
		b.Logf("%s: %d rows (%d participants) in %s, %s, CPU %s",
			memoryCases[i].name, e.rows(), e.Rows["participants"], e.Wall.Round(time.Millisecond), e.rss(),
			e.CPU().Round(time.Millisecond))
	}
	b.Logf("x10/demo peak RSS: %.2f; x20/x10: %.2f", ratio, ratio20)
	addRow("Memory (no latency, DuckDB + Parquet)",
		[]string{"demo rows", "demo peak RSS MiB", "x10 rows", "x10 peak RSS MiB", "x10/demo", "x20 rows", "x20 peak RSS MiB", "x20/x10", "x20 wall s", "failed runs", "load"},
		d(small.rows()), f0(mib(small.MaxRSSKiB)), d(large.rows()), f0(mib(large.MaxRSSKiB)), f2(ratio),
		d(larger.rows()), f0(mib(larger.MaxRSSKiB)), f2(ratio20), secs(larger.Wall), d(int64(failed)), f1(larger.Load))
}
