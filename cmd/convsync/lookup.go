package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/jobs"
	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink"
)

// groupMMSCaveat is Twilio's documented limit of ParticipantConversations.
const groupMMSCaveat = "ParticipantConversations finds participants by identity or messaging_binding.address only: " +
	"group-MMS participants that have a projected_address but neither are not found this way " +
	"(query the participants table of an export for them)"

func runLookup(ctx context.Context, args []string, stdout, stderr io.Writer, rep *report) error {
	var f common
	var subjects []extract.Subject
	fs := flag.NewFlagSet("convsync lookup", flag.ContinueOnError)
	f.register(fs)
	fs.Func("identity", "look up this `identity` (repeatable)", func(v string) error {
		if v == "" {
			return fmt.Errorf("empty identity")
		}
		subjects = append(subjects, extract.Subject{Identity: v})
		return nil
	})
	fs.Func("address", "look up this `address`, e.g. +15551234567 or whatsapp:+15551234567 (repeatable)", func(v string) error {
		if v == "" {
			return fmt.Errorf("empty address")
		}
		subjects = append(subjects, extract.Subject{Address: v})
		return nil
	})
	fs.Func("from", "read subjects from `file`: one a line, 'identity:' or 'address:' then the value (repeatable)", func(path string) error {
		s, err := readSubjects(path)
		subjects = append(subjects, s...)
		return err
	})
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("lookup takes subjects through --identity, --address or --from, got %q", fs.Arg(0))
	}
	if len(subjects) == 0 {
		return usageError("lookup needs at least one --identity, --address or --from")
	}
	rep.summary, rep.metrics = f.Summary, f.MetricsFile
	if err := f.Validate(os.Getenv); err != nil {
		return err
	}
	rep.outputs = f.outputLocations()
	prog, log, env, err := f.start(stderr)
	if err != nil {
		return err
	}
	defer env.close()
	rep.log = &log

	outs, err := f.openOutputs(ctx, sink.Config{Command: "lookup", RunID: newRunID(time.Now()), Tables: schemas.Lookup, Logger: log})
	if err != nil {
		return err
	}
	defer outs.Close()
	watchPublish(outs.Decided)
	log.Info().Str("run_id", outs.RunID()).Int("subjects", len(subjects)).Str("pii", f.PII).Msg("lookup started")
	sum, err := jobs.Lookup(ctx, env.client, outs, subjects, f.jobsConfig(outs, log, prog))
	prog.finish()
	rep.run = &sum.Run
	if err != nil {
		return fmt.Errorf("lookup failed: %w", outputError(err))
	}
	logSummary(&log, sum.Run)
	rep.text = func(w io.Writer) {
		f.textSummary(w, sum.Run, nil)
		if len(sum.NotFound) > 0 {
			fmt.Fprintf(w, "%d of %d subjects are in no conversation:\n", len(sum.NotFound), len(subjects))
			for _, i := range sum.NotFound {
				s := subjects[i]
				fmt.Fprintf(w, "  #%d %s %s\n", i+1, s.Kind(), displayValue(f.policy.Display(s.Value())))
			}
			fmt.Fprintf(w, "note: %s.\n", groupMMSCaveat)
		}
	}
	return nil
}

// displayValue shows a subject value on one line: quoted, with control
// characters escaped, when it holds any.
func displayValue(v string) string {
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return strconv.Quote(v)
		}
	}
	return v
}

// readSubjects reads a subjects file: one subject a line, "identity:" or
// "address:" then the value, spaces and all. Blank lines are skipped, and
// a UTF-8 byte order mark at the start is ignored.
func readSubjects(path string) ([]extract.Subject, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var out []extract.Subject
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if n == 1 {
			line = string(bytes.TrimPrefix([]byte(line), []byte("\uFEFF")))
		}
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		switch {
		case strings.HasPrefix(line, "identity:") && len(line) > len("identity:"):
			out = append(out, extract.Subject{Identity: line[len("identity:"):]})
		case strings.HasPrefix(line, "address:") && len(line) > len("address:"):
			out = append(out, extract.Subject{Address: line[len("address:"):]})
		default:
			// The line itself is not shown: it may be personal data.
			return nil, fmt.Errorf("%s line %d: want 'identity:VALUE' or 'address:VALUE'", path, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}
