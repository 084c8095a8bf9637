// Package transform turns API objects (decoded JSON) into Arrow record
// batches of the tables declared in package schemas.
//
// Each column's value is found by the source path in its field metadata:
// nested objects such as messaging_binding and timers are flattened by
// dotted paths, date-times become UTC timestamps (RFC 3339, with or without
// fractional seconds), free-form JSON stays JSON text, and PII columns pass
// through the run's Policy.
package transform

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/convsync/convsync/schemas"
)

// Context holds the values of a row that do not come from the API object.
type Context struct {
	ServiceSID  string // the service the row was read from
	RunID       string // the run writing it
	SubjectKind string // lookup only: "identity" or "address"
	Subject     string // lookup only: the value looked up
}

type column struct {
	name    string
	path    []string // into the object; nil for derived values
	derived string
	pii     string
	json    bool // an object or array is kept as JSON text
	typ     arrow.Type
}

// Builder accumulates rows of one table into a record batch. It is not safe
// for concurrent use.
type Builder struct {
	table schemas.Table
	rb    *array.RecordBuilder
	cols  []column
	pii   *piiApplier
	n     int
	bytes int
}

// NewBuilder returns a Builder for table t whose PII columns follow p.
// Call Release when done.
func NewBuilder(mem memory.Allocator, t schemas.Table, p Policy) *Builder {
	b := &Builder{table: t, rb: array.NewRecordBuilder(mem, t.Schema), pii: newApplier(p)}
	for _, f := range t.Schema.Fields() {
		c := column{
			name: f.Name,
			pii:  schemas.Meta(f, schemas.MetaPII),
			json: schemas.Meta(f, schemas.MetaJSON) == "true",
			typ:  f.Type.ID(),
		}
		src := schemas.Meta(f, schemas.MetaSource)
		if strings.HasPrefix(src, "$") {
			c.derived = src
		} else {
			c.path = strings.Split(src, ".")
		}
		b.cols = append(b.cols, c)
	}
	return b
}

// Len is the number of rows appended since the last NewRecord.
func (b *Builder) Len() int { return b.n }

// Bytes estimates the size of the values appended since the last
// NewRecord (string bytes plus eight bytes a fixed-width value), so callers
// can bound a batch by size as well as by rows.
func (b *Builder) Bytes() int { return b.bytes }

// NewRecord returns the rows appended so far as a record and starts a new
// batch. The caller owns the record and must Release it.
func (b *Builder) NewRecord() arrow.Record {
	b.n, b.bytes = 0, 0
	return b.rb.NewRecord()
}

// Release frees the builder's buffers.
func (b *Builder) Release() { b.rb.Release() }

// Append adds one API object as a row. On error nothing is appended. Errors
// name the column and the JSON type found, never the value (it may be PII).
func (b *Builder) Append(obj map[string]any, rc Context) error {
	vals := make([]any, len(b.cols))
	for i, c := range b.cols {
		v, err := b.value(c, obj, rc)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", b.table.Name, c.name, err)
		}
		vals[i] = v
	}
	for i, v := range vals {
		appendValue(b.rb.Field(i), v)
		if s, ok := v.(string); ok {
			b.bytes += len(s)
		} else {
			b.bytes += 8
		}
	}
	b.n++
	return nil
}

// value converts the column's source value to the Go value appended for it:
// nil, string, int64, bool or time.Time.
func (b *Builder) value(c column, obj map[string]any, rc Context) (any, error) {
	var raw any
	switch c.derived {
	case "":
		raw = lookup(obj, c.path)
	case schemas.DerivedService:
		raw = rc.ServiceSID
	case schemas.DerivedRun:
		raw = rc.RunID
	case schemas.DerivedSubjectKind:
		raw = rc.SubjectKind
	case schemas.DerivedSubject:
		raw = rc.Subject
	default:
		return nil, fmt.Errorf("unknown derived source %q", c.derived)
	}
	if raw == nil || raw == "" && c.derived != "" {
		return nil, nil
	}
	switch c.typ {
	case arrow.STRING:
		s, err := asString(raw, c.json)
		if err != nil {
			return nil, err
		}
		if v, ok := b.pii.apply(c.pii, s); ok {
			return v, nil
		}
		return nil, nil
	case arrow.INT64:
		return asInt(raw)
	case arrow.BOOL:
		switch v := raw.(type) {
		case bool:
			return v, nil
		case string: // tolerated: "true" / "false"
			if b, err := strconv.ParseBool(v); err == nil {
				return b, nil
			}
		}
		return nil, fmt.Errorf("want boolean, got %s", jsonType(raw))
	case arrow.TIMESTAMP:
		s, ok := raw.(string)
		if !ok {
			return nil, fmt.Errorf("want date-time string, got %s", jsonType(raw))
		}
		if s == "" {
			return nil, nil
		}
		t, err := ParseTime(s)
		if err != nil {
			return nil, err
		}
		return t, nil
	default:
		return nil, fmt.Errorf("unsupported column type %s", c.typ)
	}
}

func appendValue(fb array.Builder, v any) {
	switch x := v.(type) {
	case nil:
		fb.AppendNull()
	case string:
		fb.(*array.StringBuilder).Append(x)
	case int64:
		fb.(*array.Int64Builder).Append(x)
	case bool:
		fb.(*array.BooleanBuilder).Append(x)
	case time.Time:
		fb.(*array.TimestampBuilder).Append(arrow.Timestamp(x.UnixMicro()))
	}
}

// lookup follows path through nested objects; a missing or null step gives nil.
func lookup(obj map[string]any, path []string) any {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// asString renders a JSON value as column text: strings as they are, numbers
// and booleans as JSON, and, in JSON-text columns, objects and arrays as
// compact JSON text.
func asString(v any, jsonText bool) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case map[string]any, []any:
		if !jsonText {
			return "", fmt.Errorf("want string, got %s", jsonType(v))
		}
		buf, err := json.Marshal(x)
		if err != nil {
			return "", fmt.Errorf("encode JSON text: %w", err)
		}
		return string(buf), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	default:
		return "", fmt.Errorf("want string, got %s", jsonType(v))
	}
}

func asInt(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			return nil, fmt.Errorf("want integer: %w", err)
		}
		return n, nil
	case string: // tolerated: a number sent as a string
		n, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("want integer, got a non-numeric string")
		}
		return n, nil
	case float64:
		if x != float64(int64(x)) {
			return nil, fmt.Errorf("want integer, got fraction")
		}
		return int64(x), nil
	default:
		return nil, fmt.Errorf("want integer, got %s", jsonType(v))
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// timeLayouts are the date-time forms accepted: RFC 3339 (what Twilio
// sends), with or without fractional seconds, and, leniently, a space for
// the T and no zone (taken as UTC).
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999",
}

// ParseTime parses a date-time (see timeLayouts) and returns it in UTC.
func ParseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not an RFC 3339 date-time: %q", s)
}
