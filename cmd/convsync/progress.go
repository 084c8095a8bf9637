package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
)

// progress shows a run in flight: a line redrawn in place on a terminal,
// or a structured log line every logEvery otherwise. Logs written through
// Writer clear the live line first, so the two do not overprint.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	live     bool
	log      *zerolog.Logger // set by setLogger
	lastLog  time.Time
	lastReq  int64
	lastTime time.Duration
	drawn    bool
}

const logEvery = 10 * time.Second

func newProgress(w io.Writer, mode string) *progress {
	live := mode == "on" || mode == "auto" && stderrIsTerminal(w)
	return &progress{w: w, live: live, lastLog: time.Now()}
}

// setLogger sets the logger progress logs to when not live.
func (p *progress) setLogger(l *zerolog.Logger) { p.log = l }

// Write writes a log line, clearing the live progress line first.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
	return p.w.Write(b)
}

// short renders a count compactly (12.9k, 3.4M) for the live line.
func short(n int64) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%.0fM", float64(n)/1e6)
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	case n >= 1_000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// update is called by the job about once a second.
func (p *progress) update(s jobs.Progress) {
	if rate, log := p.draw(s); log {
		// Logged outside the lock: the line comes back through Write.
		ev := p.log.Info().Dur("elapsed", s.Elapsed).Int64("requests", s.Stats.Requests).
			Int64("retries", s.Stats.Retries).Float64("requests_per_s", rate).Int64("parents_skipped", s.ParentsSkipped)
		for t, n := range s.Rows {
			ev = ev.Int64("rows_"+t, n)
		}
		ev.Msg("progress")
	}
}

// draw redraws the live line, or reports that a progress log line is due
// (every logEvery, and at the end), with the request rate.
func (p *progress) draw(s jobs.Progress) (rate float64, log bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if dt := (s.Elapsed - p.lastTime).Seconds(); dt > 0 {
		rate = float64(s.Stats.Requests-p.lastReq) / dt
	}
	if s.Done && s.Elapsed > 0 {
		rate = float64(s.Stats.Requests) / s.Elapsed.Seconds() // the run's average
	}
	p.lastReq, p.lastTime = s.Stats.Requests, s.Elapsed
	if p.live {
		var parts []string
		for _, t := range append(append([]schemas.Table{}, schemas.Export...), schemas.Lookup...) {
			if n, ok := s.Rows[t.Name]; ok {
				parts = append(parts, fmt.Sprintf("%s %s", t.Name, short(n)))
			}
		}
		fmt.Fprintf(p.w, "\r\033[K%s | %s req, %.0f/s, %d retries | %s",
			strings.Join(parts, " "), short(s.Stats.Requests), rate, s.Stats.Retries, s.Elapsed.Round(time.Second))
		p.drawn = true
		return rate, false
	}
	if time.Since(p.lastLog) < logEvery && !s.Done {
		return rate, false
	}
	p.lastLog = time.Now()
	return rate, true
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
