// Package runs holds the record a convsync run keeps of itself: what it ran,
// when, with which version, and what it wrote. The DuckDB output keeps it as
// a row of the runs table, a Parquet dataset as _runs/<run_id>.json.
package runs

import (
	"encoding/json"
	"fmt"
	"time"
)

// Statuses of a run record.
const (
	Succeeded = "succeeded"
	Failed    = "failed"
)

// Record is what a run records about itself.
type Record struct {
	// RunID identifies the run, e.g. "20261122T041500Z-3f9a1c".
	RunID string `json:"run_id"`
	// Command is "export" or "lookup".
	Command string `json:"command"`
	// Version is the convsync version that wrote the run.
	Version string `json:"version"`
	// SnapshotDate is the civil date (YYYY-MM-DD) the snapshot is filed under.
	SnapshotDate string    `json:"snapshot_date"`
	StartedAt    time.Time `json:"started_at"`
	EndedAt      time.Time `json:"ended_at"`
	Status       string    `json:"status"`
	// PII is the run's PII mode: keep, hash or redact.
	PII string `json:"pii"`
	// Rows counts the rows written per table.
	Rows map[string]int64 `json:"rows"`
	// Requests counts API requests sent, Retries the ones repeated after a
	// transient failure, Throttled the 429 answers among them.
	Requests  int64 `json:"requests"`
	Retries   int64 `json:"retries"`
	Throttled int64 `json:"throttled"`
	// Duplicates counts the rows dropped because their key was already
	// seen in the same list (Twilio's cursors repeat a row when data
	// changes during a walk).
	Duplicates int64 `json:"duplicates"`
	// ParentsSkipped counts services, users and conversations found deleted
	// while the run walked them (their rows kept, without child rows).
	ParentsSkipped int64 `json:"parents_skipped"`
	// Services lists the service SIDs walked.
	Services []string `json:"services"`
	// UnknownFields counts, per table and field, the fields the API sent
	// that the table does not have (left out of the rows).
	UnknownFields map[string]map[string]int64 `json:"unknown_fields"`
	// ConcurrencyLimit is the request limit convsync had found for the
	// account when the run ended, and ConcurrencyPeak the most requests it
	// had in flight.
	ConcurrencyLimit int `json:"concurrency_limit"`
	ConcurrencyPeak  int `json:"concurrency_peak"`
}

// Date formats t's UTC calendar date as YYYY-MM-DD.
func Date(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// Normalized returns r with nil maps and slices made empty and times in
// UTC, so that its JSON form never holds null for a collection.
func (r Record) Normalized() Record {
	if r.Rows == nil {
		r.Rows = map[string]int64{}
	}
	if r.Services == nil {
		r.Services = []string{}
	}
	if r.UnknownFields == nil {
		r.UnknownFields = map[string]map[string]int64{}
	}
	r.StartedAt, r.EndedAt = r.StartedAt.UTC(), r.EndedAt.UTC()
	return r
}

// Marshal returns the record's JSON file form (indented, newline at the end).
func (r Record) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(r.Normalized(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode run record: %w", err)
	}
	return append(b, '\n'), nil
}

// Unmarshal parses a record written by Marshal.
func Unmarshal(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("decode run record: %w", err)
	}
	return r.Normalized(), nil
}
