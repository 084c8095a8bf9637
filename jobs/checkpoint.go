package jobs

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/convsync/convsync/schemas"
	"github.com/convsync/convsync/sink/stage"
)

// An export checkpoints by time and by volume, so that a SIGKILL at any
// instant loses at most max(2 s, min(60 s, 5% of the run's elapsed time))
// of fetching. A checkpoint holds the fetchers off (each commits a page or
// a child list under a shared lock), sends a marker down every table
// writer's queue, whose writer hands what it holds to the sink when it
// reaches it, and then has the sink make it all durable together with the
// job's state: the position of every long list walk, the counters, and
// log lines of the parents listed (P) and of the child lists finished (D)
// since the last checkpoint.
//
// A resumed export re-lists the services (a request or two), goes on with
// each user and conversation list from its recorded position, fetches the
// child lists of the parents listed but not finished, and skips the rest.

// Schedule says when an export checkpoints: after Share of the elapsed
// time, kept between Min and Max, or once Bytes more of batches were
// written, whichever comes first. Taking checkpoints a little more often
// than the loss bound asks covers the child lists under way at the
// checkpoint, whose pages fetched so far are fetched again after a kill.
type Schedule struct {
	Min, Max time.Duration
	Share    float64
	Bytes    int64
}

// DefaultSchedule meets the loss bound max(2 s, min(60 s, 5%)).
var DefaultSchedule = Schedule{Min: time.Second, Max: 45 * time.Second, Share: 0.04, Bytes: 256 << 20}

// interval is the time between checkpoints after elapsed.
func (s Schedule) interval(elapsed time.Duration) time.Duration {
	d := time.Duration(float64(elapsed) * s.Share)
	return min(max(d, s.Min), s.Max)
}

// state is the job's part of a checkpoint.
type state struct {
	Fingerprint string    `json:"fingerprint"`
	Started     time.Time `json:"started"`
	Requests    int64     `json:"requests"`
	Retries     int64     `json:"retries"`
	Throttled   int64     `json:"throttled"`
	Skipped     int64     `json:"parents_skipped"`
	Duplicates  int64     `json:"duplicates"`
	Checkpoints int       `json:"checkpoints"`
	// Rows counts the rows written per table, for progress.
	Rows map[string]int64 `json:"rows,omitempty"`
	// Walks is the position of each long list walk, by walkKey.
	Walks map[string]walkState `json:"walks"`
	// Unknown counts the fields the API sent that the tables do not have.
	Unknown map[string]map[string]int64 `json:"unknown_fields,omitempty"`
}

// walkState is where a user or conversation list walk stands.
type walkState struct {
	// Next is the page to go on from; empty once Done.
	Next string `json:"next,omitempty"`
	Done bool   `json:"done,omitempty"`
	// Window holds the key hashes of the last page, so that a row the
	// cursor repeats across the resume is still dropped.
	Window []uint64 `json:"window,omitempty"`
}

func walkKey(kind, svc string) string { return kind + ":" + svc }

// Parent kinds, as log lines and walk keys name them.
const (
	kindUser         = "u"
	kindConversation = "c"
)

func logLine(tag, kind, svc, sid string) string { return tag + " " + kind + " " + svc + " " + sid }

// Resume is what a resumed export continues from.
type Resume struct {
	st state
	// pending are the parents listed but not finished, in listing order.
	pending []parent
	// finished counts the parents whose child lists are done.
	finished int
	// crawled is set when the interrupted run had fetched everything.
	crawled bool
	// taken is when the checkpoint was taken.
	taken time.Time
}

// parent is a user or a conversation whose child list is to be fetched.
type parent struct{ kind, svc, sid string }

// LoadResume reads the job's state from a sink checkpoint.
func LoadResume(cp *stage.Checkpoint) (*Resume, error) {
	r := &Resume{crawled: cp.Finished, taken: cp.Taken}
	if err := json.Unmarshal(cp.State, &r.st); err != nil {
		return nil, fmt.Errorf("checkpoint of run %s: %w", cp.RunID, err)
	}
	listed := map[string]int{} // unit -> index in order
	var order []parent
	done := map[string]bool{}
	for _, l := range cp.Log {
		f := strings.Fields(l)
		if len(f) != 4 {
			return nil, fmt.Errorf("checkpoint of run %s: bad log line %q", cp.RunID, l)
		}
		unit := f[1] + " " + f[2] + " " + f[3]
		switch f[0] {
		case "P":
			if _, ok := listed[unit]; !ok {
				listed[unit] = len(order)
				order = append(order, parent{kind: f[1], svc: f[2], sid: f[3]})
			}
		case "D":
			done[unit] = true
		default:
			return nil, fmt.Errorf("checkpoint of run %s: bad log line %q", cp.RunID, l)
		}
	}
	for _, p := range order {
		if done[p.kind+" "+p.svc+" "+p.sid] {
			r.finished++
			continue
		}
		r.pending = append(r.pending, p)
	}
	return r, nil
}

// Fingerprint returns the fingerprint of the checkpoint's run.
func (r *Resume) Fingerprint() string { return r.st.Fingerprint }

// Finished is the number of parents the resumed run need not fetch again.
func (r *Resume) Finished() int { return r.finished }

// Pending is the number of parents listed whose child lists are to be
// fetched again.
func (r *Resume) Pending() int { return len(r.pending) }

// Inputs are what a run reads and writes, as far as a resume must match.
type Inputs struct {
	// BaseURL is the API root ("demo" for the in-process simulated API,
	// which listens on a new port each time).
	BaseURL  string
	Services []string
	PII      string
	PIIKey   []byte
	Date     string
	History  bool
	// Outputs are the outputs' locations.
	Outputs []string
}

// Fingerprint identifies a run's inputs, so that a resume continues only
// a run of the same inputs into the same outputs. The base URL is
// normalised (scheme and host in lower case, no trailing slash); the PII
// key enters as an HMAC, never as itself.
func Fingerprint(in Inputs) string {
	var b strings.Builder
	services := slices.Clone(in.Services)
	slices.Sort(services)
	outputs := slices.Clone(in.Outputs)
	slices.Sort(outputs)
	fmt.Fprintf(&b, "api=%s\nservices=%s\npii=%s\ndate=%s\nhistory=%t\noutputs=%s\n", normalizeURL(in.BaseURL),
		strings.Join(services, ","), in.PII, in.Date, in.History, strings.Join(outputs, "\x00"))
	if len(in.PIIKey) > 0 {
		m := hmac.New(sha256.New, in.PIIKey)
		m.Write([]byte("convsync resume fingerprint"))
		fmt.Fprintf(&b, "key=%x\n", m.Sum(nil))
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

func normalizeURL(u string) string {
	u = strings.TrimRight(u, "/")
	if i := strings.Index(u, "://"); i > 0 {
		rest := u[i+3:]
		host, path, _ := strings.Cut(rest, "/")
		u = strings.ToLower(u[:i]) + "://" + strings.ToLower(host)
		if path != "" {
			u += "/" + path
		}
	}
	return u
}

// checkpoints coordinates an export's checkpoints.
type checkpoints struct {
	// hold is held shared while a fetcher commits a page or a child list,
	// and exclusively while a checkpoint is taken.
	hold    sync.RWMutex
	mu      sync.Mutex // guards what follows
	pending []string   // log lines since the last checkpoint
	walks   map[string]walkState
	taken   int
}

func newCheckpoints(prior *Resume) *checkpoints {
	c := &checkpoints{walks: map[string]walkState{}}
	if prior != nil {
		for k, w := range prior.st.Walks {
			c.walks[k] = w
		}
		c.taken = prior.st.Checkpoints
	}
	return c
}

// walk returns a walk's recorded position.
func (c *checkpoints) walk(key string) walkState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.walks[key]
}

// commit records, under the shared hold, a walk's new position (when key
// is not empty) and log lines.
func (c *checkpoints) commit(key string, w walkState, lines ...string) {
	c.mu.Lock()
	if key != "" {
		c.walks[key] = w
	}
	c.pending = append(c.pending, lines...)
	c.mu.Unlock()
}

// take drains the writers and returns the state to record and the log
// lines since the last checkpoint; call with hold held exclusively.
func (c *checkpoints) take(ctx context.Context, ws *writers, st state) ([]byte, []string, error) {
	for _, w := range ws.order {
		ack := make(chan error, 1)
		if err := w.send(ctx, item{mark: ack}); err != nil {
			return nil, nil, err
		}
		select {
		case err := <-ack:
			if err != nil {
				return nil, nil, err
			}
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		}
	}
	c.mu.Lock()
	lines := c.pending
	c.pending = nil
	st.Walks = make(map[string]walkState, len(c.walks))
	for k, w := range c.walks {
		st.Walks[k] = w
	}
	c.taken++
	st.Checkpoints = c.taken
	c.mu.Unlock()
	b, err := json.Marshal(st)
	if err != nil {
		return nil, nil, err
	}
	return b, lines, nil
}

// schedule calls take at the times s sets, from started, until stop is
// closed or ctx is done; it returns the first error.
func (s Schedule) run(ctx context.Context, stop <-chan struct{}, started time.Time, volume func() int64, take func() error) error {
	t := time.NewTicker(max(min(100*time.Millisecond, s.Min), time.Millisecond))
	defer t.Stop()
	last, lastBytes := time.Now(), volume()
	for {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if now.Sub(last) < s.interval(now.Sub(started)) && (s.Bytes <= 0 || volume()-lastBytes < s.Bytes) {
				continue
			}
			if err := take(); err != nil {
				return err
			}
			last, lastBytes = time.Now(), volume()
		}
	}
}

// ResumedTables are the tables whose staged rows a resumed export keeps;
// the services are listed again (a request or two).
var ResumedTables = []string{
	schemas.Users.Name, schemas.UserConversations.Name, schemas.Conversations.Name, schemas.Participants.Name,
}
