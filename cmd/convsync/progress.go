package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
)

// progress shows a run in flight: a line redrawn in place on a terminal,
// or a structured log line every logEvery otherwise.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	live     bool
	log      *zerolog.Logger
	lastLog  time.Time
	lastReq  int64
	lastTime time.Duration
	drawn    bool
}

const logEvery = 10 * time.Second

func newProgress(w io.Writer, mode string, log *zerolog.Logger) *progress {
	live := mode == "on"
	if mode == "auto" {
		f, ok := w.(*os.File)
		live = ok && isTerminal(f)
	}
	return &progress{w: w, live: live, log: log, lastLog: time.Now()}
}

// update is called by the job about once a second.
func (p *progress) update(s jobs.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rate := 0.0
	if dt := (s.Elapsed - p.lastTime).Seconds(); dt > 0 {
		rate = float64(s.Stats.Requests-p.lastReq) / dt
	}
	p.lastReq, p.lastTime = s.Stats.Requests, s.Elapsed
	if p.live {
		var parts []string
		for _, t := range append(append([]schemas.Table{}, schemas.Export...), schemas.Lookup...) {
			if n, ok := s.Rows[t.Name]; ok {
				parts = append(parts, fmt.Sprintf("%s %s", t.Name, fmtCount(n)))
			}
		}
		line := fmt.Sprintf("%s | %.0f req/s | %s requests | %d retries | %s",
			strings.Join(parts, " · "), rate, fmtCount(s.Stats.Requests), s.Stats.Retries, s.Elapsed.Round(time.Second))
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.drawn = true
		return
	}
	if time.Since(p.lastLog) < logEvery && !s.Done {
		return
	}
	p.lastLog = time.Now()
	ev := p.log.Info().Dur("elapsed", s.Elapsed).Int64("requests", s.Stats.Requests).
		Int64("retries", s.Stats.Retries).Float64("requests_per_s", rate).Int64("parents_skipped", s.ParentsSkipped)
	for t, n := range s.Rows {
		ev = ev.Int64("rows_"+t, n)
	}
	ev.Msg("progress")
}

// finish ends the live line so later output starts on a fresh line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
