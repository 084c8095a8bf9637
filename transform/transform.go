// Package transform turns API objects, as package extract decodes them,
// into Arrow record batches of the tables declared in package schemas.
//
// Each column's value is found by the source path in its field metadata:
// nested objects such as messaging_binding and timers are flattened by
// dotted paths, date-times become UTC timestamps (RFC 3339, with or without
// fractional seconds), free-form JSON stays JSON text, and PII columns pass
// through the run's Policy. An object is read in one pass over its fields,
// which are looked up in a table built from the schema; fields the table
// does not have are left out and counted (UnknownFields).
package transform

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/valyala/fastjson"

	"github.com/convsync/convsync/schemas"
)

// Context holds the values of a row that do not come from the API object.
type Context struct {
	ServiceSID  string // the service the row was read from
	RunID       string // the run writing it
	SubjectKind string // lookup only: "identity" or "address"
	Subject     string // lookup only: the value looked up
}

// dropped are fields every table leaves out on purpose (INTERFACE.md:
// links is not exported); they are not reported as unknown.
var dropped = map[string]bool{"links": true}

// maxUnknown bounds the distinct unknown fields counted per table, so a
// server sending a new field name in every object cannot grow memory.
const maxUnknown = 64

// otherUnknown counts unknown fields past maxUnknown.
const otherUnknown = "(other fields)"

type column struct {
	name    string
	derived string // schemas.Derived* for values convsync supplies
	pii     string
	json    bool // an object or array is kept as JSON text
	typ     arrow.Type
}

// field is what a field of the object (or of a nested object) feeds: the
// columns whose source it is, and for a nested object its own fields.
type field struct {
	cols   []int
	nested map[string]*field
}

// value is a column's value for the row being appended.
type value struct {
	set bool
	s   []byte
	str string // when set instead of s (hashed values, derived values)
	i   int64
	b   bool
	t   int64 // timestamp, microseconds
}

// Builder accumulates rows of one table into a record batch. It is not safe
// for concurrent use.
type Builder struct {
	table   schemas.Table
	rb      *array.RecordBuilder
	cols    []column
	fields  map[string]*field
	derived []int
	pii     *piiApplier
	vals    []value
	jbuf    []byte
	n       int
	bytes   int
	unknown map[string]int64
}

// NewBuilder returns a Builder for table t whose PII columns follow p.
// Call Release when done.
func NewBuilder(mem memory.Allocator, t schemas.Table, p Policy) *Builder {
	b := &Builder{table: t, rb: array.NewRecordBuilder(mem, t.Schema), pii: newApplier(p),
		fields: map[string]*field{}, unknown: map[string]int64{}}
	for i, f := range t.Schema.Fields() {
		c := column{
			name: f.Name,
			pii:  schemas.Meta(f, schemas.MetaPII),
			json: schemas.Meta(f, schemas.MetaJSON) == "true",
			typ:  f.Type.ID(),
		}
		src := schemas.Meta(f, schemas.MetaSource)
		if strings.HasPrefix(src, "$") {
			c.derived = src
			b.derived = append(b.derived, i)
			// A field of the API named like a column convsync supplies
			// itself (chat_service_sid) is known, and the column's own
			// value wins.
			if b.fields[f.Name] == nil {
				b.fields[f.Name] = &field{}
			}
		} else {
			path := strings.Split(src, ".")
			fs := b.fields
			for depth, p := range path {
				fd := fs[p]
				if fd == nil {
					fd = &field{}
					fs[p] = fd
				}
				if depth == len(path)-1 {
					fd.cols = append(fd.cols, i)
				} else {
					if fd.nested == nil {
						fd.nested = map[string]*field{}
					}
					fs = fd.nested
				}
			}
		}
		b.cols = append(b.cols, c)
	}
	b.vals = make([]value, len(b.cols))
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

// UnknownFields returns, per field name (nested ones as parent.child),
// how many appended objects held a field the table does not have.
func (b *Builder) UnknownFields() map[string]int64 { return b.unknown }

// Append adds one API object (as package extract decodes it) as a row. On error nothing is appended. Errors
// name the column and the JSON type found, never the value (it may be PII).
func (b *Builder) Append(obj *fastjson.Value, rc Context) error {
	o, err := obj.Object()
	if err != nil {
		return fmt.Errorf("%s: the row is a JSON %s, not an object", b.table.Name, obj.Type())
	}
	for i := range b.vals {
		b.vals[i] = value{}
	}
	if err := b.visit(o, b.fields, ""); err != nil {
		return err
	}
	for _, i := range b.derived {
		var s string
		switch b.cols[i].derived {
		case schemas.DerivedService:
			s = rc.ServiceSID
		case schemas.DerivedRun:
			s = rc.RunID
		case schemas.DerivedSubjectKind:
			s = rc.SubjectKind
		case schemas.DerivedSubject:
			s = rc.Subject
		default:
			return fmt.Errorf("%s.%s: unknown derived source %q", b.table.Name, b.cols[i].name, b.cols[i].derived)
		}
		b.vals[i] = value{}
		if s != "" {
			b.setString(i, nil, s)
		}
	}
	for i := range b.cols {
		b.appendValue(i)
	}
	b.n++
	return nil
}

// visit reads an object's fields into b.vals; prefix names the parent of
// a nested object ("" at the top).
func (b *Builder) visit(o *fastjson.Object, fields map[string]*field, prefix string) error {
	var err error
	o.Visit(func(key []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		fd := fields[b2s(key)]
		switch {
		case fd == nil:
			if prefix == "" && dropped[b2s(key)] {
				return
			}
			b.countUnknown(prefix, key)
		case fd.nested != nil:
			switch v.Type() {
			case fastjson.TypeNull:
			case fastjson.TypeObject:
				no, _ := v.Object()
				err = b.visit(no, fd.nested, prefix+string(key)+".")
			default:
				err = fmt.Errorf("%s: %s%s: want an object, got %s", b.table.Name, prefix, key, v.Type())
			}
		default:
			for _, i := range fd.cols {
				if err = b.set(i, v); err != nil {
					err = fmt.Errorf("%s.%s: %w", b.table.Name, b.cols[i].name, err)
					return
				}
			}
		}
	})
	return err
}

func (b *Builder) countUnknown(prefix string, key []byte) {
	name := prefix + string(key)
	if len(name) > 80 {
		name = name[:80] + "..."
	}
	if _, ok := b.unknown[name]; !ok && len(b.unknown) >= maxUnknown {
		name = otherUnknown
	}
	b.unknown[name]++
}

// set converts v for column i.
func (b *Builder) set(i int, v *fastjson.Value) error {
	c := b.cols[i]
	t := v.Type()
	if t == fastjson.TypeNull {
		return nil
	}
	switch c.typ {
	case arrow.STRING:
		switch t {
		case fastjson.TypeString:
			s, _ := v.StringBytes()
			b.setString(i, s, "")
		case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
			b.jbuf = v.MarshalTo(b.jbuf[:0])
			b.setString(i, nil, string(b.jbuf))
		default: // object or array
			if !c.json {
				return fmt.Errorf("want string, got %s", t)
			}
			b.jbuf = v.MarshalTo(b.jbuf[:0])
			b.setString(i, nil, string(b.jbuf))
		}
	case arrow.INT64:
		switch t {
		case fastjson.TypeNumber:
			n, err := v.Int64()
			if err != nil {
				return fmt.Errorf("want integer, got a number that is not one")
			}
			b.vals[i] = value{set: true, i: n}
		case fastjson.TypeString: // tolerated: a number sent as a string
			s, _ := v.StringBytes()
			n, err := strconv.ParseInt(strings.TrimSpace(b2s(s)), 10, 64)
			if err != nil {
				return fmt.Errorf("want integer, got a non-numeric string")
			}
			b.vals[i] = value{set: true, i: n}
		default:
			return fmt.Errorf("want integer, got %s", t)
		}
	case arrow.BOOL:
		switch t {
		case fastjson.TypeTrue, fastjson.TypeFalse:
			b.vals[i] = value{set: true, b: t == fastjson.TypeTrue}
		case fastjson.TypeString: // tolerated: "true" / "false"
			s, _ := v.StringBytes()
			x, err := strconv.ParseBool(b2s(s))
			if err != nil {
				return fmt.Errorf("want boolean, got string")
			}
			b.vals[i] = value{set: true, b: x}
		default:
			return fmt.Errorf("want boolean, got %s", t)
		}
	case arrow.TIMESTAMP:
		if t != fastjson.TypeString {
			return fmt.Errorf("want date-time string, got %s", t)
		}
		s, _ := v.StringBytes()
		if len(s) == 0 {
			return nil
		}
		tm, err := ParseTime(b2s(s))
		if err != nil {
			return errors.New("want an RFC 3339 date-time string") // the value may be PII
		}
		b.vals[i] = value{set: true, t: tm.UnixMicro()}
	default:
		return fmt.Errorf("unsupported column type %s", c.typ)
	}
	return nil
}

// setString sets a string column, from bytes s or from str, through the
// PII policy.
func (b *Builder) setString(i int, s []byte, str string) {
	pii := b.cols[i].pii
	if pii == "" || b.pii.mode == PIIKeep || b.pii.mode == "" {
		b.vals[i] = value{set: true, s: s, str: str}
		return
	}
	if s == nil {
		s = []byte(str)
	}
	if out, ok := b.pii.apply(pii, s); ok {
		b.vals[i] = value{set: true, str: out}
	}
}

func (b *Builder) appendValue(i int) {
	v := &b.vals[i]
	fb := b.rb.Field(i)
	if !v.set {
		fb.AppendNull()
		b.bytes++
		return
	}
	switch b.cols[i].typ {
	case arrow.STRING:
		sb := fb.(*array.StringBuilder)
		if v.s != nil {
			sb.BinaryBuilder.Append(v.s)
			b.bytes += len(v.s)
		} else {
			sb.Append(v.str)
			b.bytes += len(v.str)
		}
	case arrow.INT64:
		fb.(*array.Int64Builder).Append(v.i)
		b.bytes += 8
	case arrow.BOOL:
		fb.(*array.BooleanBuilder).Append(v.b)
		b.bytes++
	case arrow.TIMESTAMP:
		fb.(*array.TimestampBuilder).Append(arrow.Timestamp(v.t))
		b.bytes += 8
	}
}

// b2s views bytes as a string without copying; the string must not
// outlive the bytes.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

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
