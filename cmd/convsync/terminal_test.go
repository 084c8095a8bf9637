package main

import (
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/convsync/convsync/internal/fakeapi"
)

// ansi matches the escape sequences convsync writes.
var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// TestProgressFitsTheTerminal runs an export on a real pseudo-terminal of
// 60, 80 and 120 columns (and one resized from 120 to 60 mid-run): every
// redraw of the live line fits the width (so it never wraps into stacked
// partial lines), and the line shows the request limit and the 429s.
func TestProgressFitsTheTerminal(t *testing.T) {
	n := startNight(t, 101, fakeapi.Faults{Latency: 15 * time.Millisecond, MaxInFlight: 6})
	slow := startNight(t, 102, fakeapi.Faults{Latency: 40 * time.Millisecond, MaxInFlight: 4})
	for _, tc := range []struct {
		name         string
		cols, resize int
	}{{"60", 60, 0}, {"80", 80, 0}, {"120", 120, 0}, {"120 to 60", 120, 60}} {
		t.Run(tc.name, func(t *testing.T) {
			n := n
			if tc.resize > 0 {
				n = slow // long enough to draw several lines after the resize
			}
			o := newOuts(t)
			cmd := exec.Command(binPath, "export", "--base-url", n.srv.URL(), "--duckdb", o.db, "--parquet", o.pq, "--concurrency", "16")
			cmd.Env = append(n.env(), "PATH=/usr/bin:/bin", "TERM=xterm", "HOME="+t.TempDir())
			f, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: uint16(tc.cols), Rows: 24})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var out syncBuffer
			read := make(chan struct{})
			go func() { io.Copy(&out, f); out.close(); close(read) }()
			width, drawnBefore := tc.cols, 0
			if tc.resize > 0 {
				// Resized once the live line has been drawn twice.
				out.waitFor(t, " req ", 2)
				drawnBefore = strings.Count(out.String(), " req ")
				pty.Setsize(f, &pty.Winsize{Cols: uint16(tc.resize), Rows: 24})
				width = tc.resize
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("export: %v\n%s", err, out.String())
			}
			<-read
			var live []string
			for _, seg := range strings.FieldsFunc(out.String(), func(r rune) bool { return r == '\r' || r == '\n' }) {
				if strings.HasPrefix(seg, "\x1b[K") && strings.Contains(seg, " req ") {
					live = append(live, ansi.ReplaceAllString(seg, ""))
				}
			}
			if len(live) < 2 {
				t.Fatalf("%d live progress lines drawn:\n%q", len(live), out.String())
			}
			for _, l := range live {
				if utf8.RuneCountInString(l) > tc.cols-1 {
					t.Errorf("a live line of %d columns on a terminal of %d: %q", utf8.RuneCountInString(l), tc.cols, l)
				}
			}
			last := live[len(live)-1]
			if tc.resize > 0 {
				// The lines drawn after the resize (but the first, which may
				// come before the signal) fit the new width.
				after := live[min(drawnBefore+1, len(live)):]
				if len(after) == 0 {
					t.Fatalf("no live line drawn after the resize (%d before it, %d in all)", drawnBefore, len(live))
				}
				for _, l := range after {
					if utf8.RuneCountInString(l) > width-1 {
						t.Errorf("a live line of %d columns after the resize to %d: %q", utf8.RuneCountInString(l), width, l)
					}
				}
			}
			if !strings.Contains(last, "limit ") || !strings.Contains(last, "429s ") {
				t.Errorf("the live line lacks the request limit or the 429s: %q", last)
			}
			if _, err := filepath.Glob(o.db); err != nil {
				t.Fatal(err)
			}
		})
	}
}
