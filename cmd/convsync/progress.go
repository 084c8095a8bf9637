package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
)

// progress shows a run in flight: a line redrawn in place on a terminal,
// fitted to its width (read again when the window is resized), or a
// structured log line every logEvery otherwise. Logs written through
// Writer clear the live line first, so the two do not overprint.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	live     bool
	width    int
	resized  chan os.Signal
	log      *zerolog.Logger // set by setLogger
	lastLog  time.Time
	lastReq  int64
	lastTime time.Duration
	drawn    bool
}

const logEvery = 10 * time.Second

func newProgress(w io.Writer, mode string) *progress {
	live := mode == "on" || mode == "auto" && stderrIsTerminal(w)
	p := &progress{w: w, live: live, lastLog: time.Now()}
	if live {
		p.width = terminalWidth(w)
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			p.resized = make(chan os.Signal, 1)
			signal.Notify(p.resized, syscall.SIGWINCH)
		}
	}
	return p
}

// terminalWidth is the width of the terminal w is, or $COLUMNS, or 80.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return 80
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
			Int64("retries", s.Stats.Retries).Int64("throttled", s.Stats.Throttled).Int("concurrency_limit", s.Stats.Limit).
			Int("in_flight", s.Stats.InFlight).Int64("pages", s.Stats.Pages).Int64("server_errors", s.Stats.ServerErrors).
			Int64("network_errors", s.Stats.NetworkErrors).Int64("memory_held_bytes", s.Stats.MemoryHeld).
			Float64("requests_per_s", rate).Int64("parents_skipped", s.ParentsSkipped)
		for t, n := range s.Rows {
			ev = ev.Int64("rows_"+t, n)
		}
		ev.Msg("progress")
	}
}

// tableAbbrev names a table briefly on the live line.
var tableAbbrev = map[string]string{
	schemas.Services.Name: "svc", schemas.Users.Name: "users", schemas.UserConversations.Name: "user-convs",
	schemas.Conversations.Name: "convs", schemas.Participants.Name: "participants",
	schemas.ParticipantConversations.Name: "found",
}

// line composes the live line for s at rate, fitted to width: the most
// useful parts first, and as many of the others as fit.
func line(s jobs.Progress, rate float64, width int) string {
	parts := []string{
		s.Elapsed.Round(time.Second).String(),
		fmt.Sprintf("%s req %.0f/s", short(s.Stats.Requests), rate),
		fmt.Sprintf("limit %d", s.Stats.Limit),
		fmt.Sprintf("429s %s", short(s.Stats.Throttled)),
	}
	// Tables in the order that changes the most first.
	for _, name := range []string{schemas.Participants.Name, schemas.UserConversations.Name, schemas.Conversations.Name,
		schemas.Users.Name, schemas.Services.Name, schemas.ParticipantConversations.Name} {
		if n, ok := s.Rows[name]; ok {
			parts = append(parts, tableAbbrev[name]+" "+short(n))
		}
	}
	if s.Stats.Retries > 0 {
		parts = append(parts, "retries "+short(s.Stats.Retries))
	}
	if s.ParentsSkipped > 0 {
		parts = append(parts, "deleted "+short(s.ParentsSkipped))
	}
	// One column is left free: writing the last column makes some
	// terminals wrap.
	room := width - 1
	var b strings.Builder
	for i, part := range parts {
		sep := " · "
		if i == 0 {
			sep = ""
		}
		if utf8.RuneCountInString(b.String())+utf8.RuneCountInString(sep+part) > room {
			if i == 0 {
				return string([]rune(part)[:max(room, 0)])
			}
			break
		}
		b.WriteString(sep + part)
	}
	return b.String()
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
		select {
		case <-p.resized:
			p.width = terminalWidth(p.w)
		default:
		}
		fmt.Fprintf(p.w, "\r\033[K%s", line(s, rate, p.width))
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
	if p.resized != nil {
		signal.Stop(p.resized)
	}
}
