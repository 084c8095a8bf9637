// Package bench holds convsync's end-to-end benchmarks (issue 8): the real
// `convsync export` binary against `convsync fakeapi`, each as its own
// process, measured from outside (wall time, rusage), and the official
// twilio-go SDK reading the same account (sdkbaseline). They print figures
// and never assert on time; without -bench nothing runs.
//
//	go test ./internal/bench -run '^$' -bench . -benchtime 1x        # everything, about 5.5 minutes
//	go test ./internal/bench -run '^$' -bench Throughput -benchtime 1x
//	go test ./internal/bench -run '^$' -bench CPUPath -benchtime 1x
//	go test ./internal/bench -run '^$' -bench SDKBaseline -benchtime 1x
//	go test ./internal/bench -run '^$' -bench Memory -benchtime 1x
//	go test ./internal/bench -run '^$' -bench 'InProcess/cpu-path' -benchtime 1x -cpuprofile cpu.out   # pprof of the export
//	go test ./internal/bench -run '^$' -bench 'InProcess/demo-x10' -benchtime 1x -args -peakheapprofile heap.out
//
// See README.md, section Performance, for what each measures and the
// figures.
package bench
