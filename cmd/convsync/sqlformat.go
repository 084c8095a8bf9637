package main

// The output formats of `convsync sql`, and how DuckDB values print in them.

import (
	"database/sql/driver"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	duckdb "github.com/marcboeker/go-duckdb/v2"
)

// sqlType is a DuckDB column type, parsed from the type name go-duckdb
// reports (INTEGER, DECIMAL(10,2), VARCHAR[], STRUCT("a" INTEGER),
// MAP(VARCHAR, BIGINT), UNION("n" INTEGER), ...). The name of an
// unparseable type is "?": its values print by their Go type.
type sqlType struct {
	name   string     // base type name; LIST and ARRAY for T[] and T[n]
	elem   *sqlType   // LIST, ARRAY
	fields []sqlField // STRUCT, UNION
	key    *sqlType   // MAP
	value  *sqlType   // MAP
}

type sqlField struct {
	name string
	typ  *sqlType
}

var unknownType = &sqlType{name: "?"}

// parseSQLType parses a go-duckdb type name; see sqlType.
func parseSQLType(s string) *sqlType {
	p := typeParser{s: s}
	t := p.parse()
	if p.failed || p.i != len(p.s) {
		return unknownType
	}
	return t
}

type typeParser struct {
	s      string
	i      int
	failed bool
}

func (p *typeParser) eat(tok string) bool {
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

func (p *typeParser) parse() *sqlType {
	var t *sqlType
	switch {
	case p.eat("STRUCT("):
		t = &sqlType{name: "STRUCT", fields: p.fieldList()}
	case p.eat("UNION("):
		t = &sqlType{name: "UNION", fields: p.fieldList()}
	case p.eat("MAP("):
		k := p.parse()
		if !p.eat(", ") {
			p.failed = true
		}
		v := p.parse()
		if !p.eat(")") {
			p.failed = true
		}
		t = &sqlType{name: "MAP", key: k, value: v}
	default:
		j := p.i
		for j < len(p.s) && (p.s[j] == '_' || p.s[j] >= 'A' && p.s[j] <= 'Z' || p.s[j] >= '0' && p.s[j] <= '9') {
			j++
		}
		t = &sqlType{name: p.s[p.i:j]}
		p.i = j
		if t.name == "" {
			p.failed = true
			return unknownType
		}
		if p.eat("(") { // DECIMAL(w,s)
			k := strings.IndexByte(p.s[p.i:], ')')
			if k < 0 {
				p.failed = true
				return unknownType
			}
			p.i += k + 1
		}
	}
	for !p.failed {
		if p.eat("[]") {
			t = &sqlType{name: "LIST", elem: t}
			continue
		}
		if p.eat("[") {
			k := strings.IndexByte(p.s[p.i:], ']')
			if k < 0 {
				p.failed = true
				break
			}
			p.i += k + 1
			t = &sqlType{name: "ARRAY", elem: t}
			continue
		}
		break
	}
	return t
}

// fieldList parses `"name" TYPE, "name" TYPE)`.
func (p *typeParser) fieldList() []sqlField {
	var out []sqlField
	for !p.failed {
		if !p.eat(`"`) {
			p.failed = true
			break
		}
		var name strings.Builder
		for {
			k := strings.IndexByte(p.s[p.i:], '"')
			if k < 0 {
				p.failed = true
				return out
			}
			name.WriteString(p.s[p.i : p.i+k])
			p.i += k + 1
			if !p.eat(`"`) { // "" is a quote within the name
				break
			}
			name.WriteByte('"')
		}
		if !p.eat(" ") {
			p.failed = true
			break
		}
		out = append(out, sqlField{name: name.String(), typ: p.parse()})
		if p.eat(", ") {
			continue
		}
		if !p.eat(")") {
			p.failed = true
		}
		break
	}
	return out
}

// unsupported describes a type within t that go-duckdb cannot fetch
// ("of type UHUGEINT"), or is "".
func (t *sqlType) unsupported() string {
	switch t.name {
	case "":
		return "of a type go-duckdb does not know"
	case "UHUGEINT", "BIT", "BIGNUM", "VARINT", "INVALID", "ANY":
		return "of type " + t.name
	case "MAP":
		switch t.key.name {
		case "LIST", "ARRAY", "STRUCT", "MAP", "UNION":
			return "a MAP with " + t.key.name + " keys"
		}
		if s := t.key.unsupported(); s != "" {
			return s
		}
		return t.value.unsupported()
	case "LIST", "ARRAY":
		return t.elem.unsupported()
	case "STRUCT", "UNION":
		for _, f := range t.fields {
			if s := f.typ.unsupported(); s != "" {
				return s
			}
		}
	}
	return ""
}

// numeric reports whether t's values are numbers (right-aligned in table).
func (t *sqlType) numeric() bool {
	switch t.name {
	case "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
		"FLOAT", "DOUBLE", "DECIMAL":
		return true
	}
	return false
}

// member returns the type of a UNION's member, or of a STRUCT's field.
func (t *sqlType) member(name string) *sqlType {
	for _, f := range t.fields {
		if f.name == name {
			return f.typ
		}
	}
	return unknownType
}

func (t *sqlType) child() *sqlType {
	if t.elem != nil {
		return t.elem
	}
	return unknownType
}

// textValue returns v as it prints in table and csv; null reports NULL.
// Scalars print plainly (see scalarText); lists, structs, maps and JSON
// values print as compact JSON.
func textValue(v any, t *sqlType) (s string, null bool) {
	if v == nil {
		return "", true
	}
	if u, ok := v.(duckdb.Union); ok {
		return textValue(u.Value, t.member(u.Tag))
	}
	switch v.(type) {
	case []any, map[string]any, duckdb.Map:
		return string(appendJSON(nil, v, t)), false
	}
	if t.name == "JSON" {
		return string(appendJSON(nil, v, t)), false
	}
	return scalarText(v, t), false
}

// scalarText formats a non-nested value:
//
//	integers, HUGEINT  decimal digits
//	DECIMAL            digits with the type's scale (12.50)
//	FLOAT, DOUBLE      shortest exact decimal; exponent below 1e-6 and from 1e21; NaN, Infinity, -Infinity
//	BOOLEAN            true, false
//	TIMESTAMPTZ        RFC 3339 in UTC, fractional seconds as needed: 2026-11-20T04:15:00.5Z
//	TIMESTAMP          the same without the Z (it has no time zone)
//	DATE, TIME         2026-11-20, 04:15:00.5; TIMETZ in UTC: 04:15:00Z
//	infinite dates     infinity, -infinity
//	INTERVAL           as DuckDB prints it: 1 year 2 months 3 days 04:05:06.5
//	UUID               8-4-4-4-12 hex
//	BLOB               printable ASCII as is, other bytes \xHH (as DuckDB prints BLOBs)
func scalarText(v any, t *sqlType) string {
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x)
	case int8:
		return strconv.FormatInt(int64(x), 10)
	case int16:
		return strconv.FormatInt(int64(x), 10)
	case int32:
		return strconv.FormatInt(int64(x), 10)
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case uint8:
		return strconv.FormatUint(uint64(x), 10)
	case uint16:
		return strconv.FormatUint(uint64(x), 10)
	case uint32:
		return strconv.FormatUint(uint64(x), 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case *big.Int:
		return x.String()
	case float32:
		return formatFloat(float64(x), 32)
	case float64:
		return formatFloat(x, 64)
	case duckdb.Decimal:
		return formatDecimal(x)
	case string:
		return x
	case []byte:
		if t.name == "UUID" && len(x) == 16 {
			h := hex.EncodeToString(x)
			return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
		}
		return blobText(x)
	case time.Time:
		return timeText(x, t.name)
	case duckdb.Interval:
		return intervalText(x)
	case duckdb.UUID:
		return scalarText(x[:], &sqlType{name: "UUID"})
	case *duckdb.UUID:
		return scalarText(x[:], &sqlType{name: "UUID"})
	}
	return fmt.Sprint(v)
}

// formatFloat formats f as encoding/json does (shortest representation
// that round-trips; exponent form below 1e-6 and from 1e21), naming the
// values JSON has no number for.
func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	s := strconv.FormatFloat(f, format, -1, bits)
	if format == 'e' {
		// 1e-07 -> 1e-7, as encoding/json.
		if n := len(s); n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:]
		}
	}
	return s
}

// formatDecimal prints d with its scale's digits after the point: 12.50.
func formatDecimal(d duckdb.Decimal) string {
	if d.Value == nil {
		return "0"
	}
	digits := new(big.Int).Abs(d.Value).String()
	if scale := int(d.Scale); scale > 0 {
		if len(digits) <= scale {
			digits = strings.Repeat("0", scale-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
	}
	if d.Value.Sign() < 0 {
		return "-" + digits
	}
	return digits
}

// DuckDB's infinite dates and timestamps, as go-duckdb converts them.
var (
	dateInfinity    = time.Date(1970, 1, 1+math.MaxInt32, 0, 0, 0, 0, time.UTC)
	dateNegInfinity = time.Date(1970, 1, 1-math.MaxInt32, 0, 0, 0, 0, time.UTC)
	tsInfinity      = time.UnixMicro(math.MaxInt64).UTC()
	tsNegInfinity   = time.UnixMicro(-math.MaxInt64).UTC()
)

// timeText formats a DATE, TIME, TIMETZ or timestamp; see scalarText.
func timeText(x time.Time, typ string) string {
	x = x.UTC()
	switch typ {
	case "DATE":
		switch {
		case x.Equal(dateInfinity):
			return "infinity"
		case x.Equal(dateNegInfinity):
			return "-infinity"
		}
		return x.Format(time.DateOnly)
	case "TIME":
		return x.Format("15:04:05.999999999")
	case "TIMETZ":
		return x.Format("15:04:05.999999999Z07:00")
	}
	if typ == "TIMESTAMP" || typ == "TIMESTAMPTZ" {
		switch {
		case x.Equal(tsInfinity):
			return "infinity"
		case x.Equal(tsNegInfinity):
			return "-infinity"
		}
	}
	switch typ {
	case "TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS":
		return x.Format("2006-01-02T15:04:05.999999999")
	}
	return x.Format(time.RFC3339Nano)
}

// intervalText formats an INTERVAL as DuckDB casts it to VARCHAR.
func intervalText(iv duckdb.Interval) string {
	var parts []string
	unit := func(n int64, name string) {
		if n == 0 {
			return
		}
		s := strconv.FormatInt(n, 10) + " " + name
		if n != 1 && n != -1 {
			s += "s"
		}
		parts = append(parts, s)
	}
	years, months := int64(iv.Months)/12, int64(iv.Months)%12
	unit(years, "year")
	unit(months, "month")
	unit(int64(iv.Days), "day")
	if us := iv.Micros; us != 0 || len(parts) == 0 {
		sign := ""
		if us < 0 {
			sign, us = "-", -us
		}
		h, m, s, frac := us/3600e6, us/60e6%60, us/1e6%60, us%1e6
		clock := fmt.Sprintf("%s%02d:%02d:%02d", sign, h, m, s)
		if frac != 0 {
			clock += strings.TrimRight(fmt.Sprintf(".%06d", frac), "0")
		}
		parts = append(parts, clock)
	}
	return strings.Join(parts, " ")
}

// blobText prints b as DuckDB prints a BLOB: printable ASCII other than
// backslash and quotes as is, any other byte as \xHH.
func blobText(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 32 && c <= 126 && c != '\\' && c != '\'' && c != '"' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, `\x%02X`, c)
		}
	}
	return sb.String()
}

// appendJSON appends v as JSON: numbers as numbers (NaN and the
// infinities as strings), BOOLEAN as true/false, NULL as null, every other
// scalar as the JSON string of its text (scalarText), lists and arrays as
// arrays, structs as objects in field order, maps as objects keyed by the
// text of the key (sorted), a union as its value, and JSON values as they
// are.
func appendJSON(b []byte, v any, t *sqlType) []byte {
	if t == nil {
		t = unknownType
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case duckdb.Union:
		return appendJSON(b, x.Value, t.member(x.Tag))
	case bool:
		return strconv.AppendBool(b, x)
	case int8, int16, int32, int64, int, uint8, uint16, uint32, uint64, *big.Int, duckdb.Decimal:
		return append(b, scalarText(v, t)...)
	case float32, float64:
		s := scalarText(v, t)
		if s == "NaN" || strings.HasSuffix(s, "Infinity") {
			return appendJSONString(b, s)
		}
		return append(b, s...)
	case string:
		if t.name == "JSON" {
			return appendJSONValue(b, x)
		}
		return appendJSONString(b, x)
	case []any:
		if t.name == "JSON" {
			return appendJSONValue(b, x)
		}
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, e, t.child())
		}
		return append(b, ']')
	case map[string]any:
		if t.name == "JSON" {
			return appendJSONValue(b, x)
		}
		// Struct fields in the type's order; any others after, sorted.
		var keys []string
		done := map[string]bool{}
		for _, f := range t.fields {
			if _, ok := x[f.name]; ok && !done[f.name] {
				keys = append(keys, f.name)
				done[f.name] = true
			}
		}
		var rest []string
		for k := range x {
			if !done[k] {
				rest = append(rest, k)
			}
		}
		slices.Sort(rest)
		b = append(b, '{')
		for i, k := range append(keys, rest...) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSON(b, x[k], t.member(k))
		}
		return append(b, '}')
	case duckdb.Map:
		kt, vt := t.key, t.value
		if kt == nil {
			kt, vt = unknownType, unknownType
		}
		type entry struct {
			key string
			raw any
			val any
		}
		entries := make([]entry, 0, len(x))
		for k, val := range x {
			ks, null := textValue(k, kt)
			if null {
				ks = "null"
			}
			entries = append(entries, entry{ks, k, val})
		}
		slices.SortFunc(entries, func(a, c entry) int { return compareKeys(a.raw, c.raw, a.key, c.key) })
		b = append(b, '{')
		for i, e := range entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, e.key)
			b = append(b, ':')
			b = appendJSON(b, e.val, vt)
		}
		return append(b, '}')
	}
	if t.name == "JSON" {
		return appendJSONValue(b, v)
	}
	return appendJSONString(b, scalarText(v, t))
}

// compareKeys orders map keys: numbers by value, anything else by text.
func compareKeys(a, b any, as, bs string) int {
	af, aok := keyNumber(a)
	bf, bok := keyNumber(b)
	if aok && bok && af != bf {
		if af < bf {
			return -1
		}
		return 1
	}
	return strings.Compare(as, bs)
}

func keyNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// appendJSONValue appends a value go-duckdb decoded from a JSON column.
func appendJSONValue(b []byte, v any) []byte {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return appendJSONString(b, fmt.Sprint(v))
	}
	return append(b, strings.TrimSuffix(sb.String(), "\n")...)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD; <, > and & stay as they are.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = fmt.Appendf(b, `\u%04x`, c)
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// resultColumn is a column of the result.
type resultColumn struct {
	name string
	typ  *sqlType
}

// resultWriter prints a result in one format.
type resultWriter interface {
	header(cols []resultColumn) error
	row(vals []driver.Value) error
	end() error
}

func newResultWriter(format string, w io.Writer) resultWriter {
	switch format {
	case "csv":
		return &csvWriter{w: csv.NewWriter(w)}
	case "json":
		return &jsonWriter{w: w}
	}
	return &tableWriter{w: w}
}

// csvWriter writes RFC 4180 CSV (encoding/csv): a header row with the
// column names, then one record a row. NULL is an empty field, as is an
// empty string.
type csvWriter struct {
	w    *csv.Writer
	cols []resultColumn
	rec  []string
}

func (c *csvWriter) header(cols []resultColumn) error {
	c.cols = cols
	c.rec = make([]string, len(cols))
	for i, col := range cols {
		c.rec[i] = col.name
	}
	return c.write()
}

func (c *csvWriter) row(vals []driver.Value) error {
	for i, v := range vals {
		c.rec[i], _ = textValue(v, c.cols[i].typ)
	}
	return c.write()
}

func (c *csvWriter) write() error {
	if len(c.rec) == 0 {
		return nil
	}
	if err := c.w.Write(c.rec); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	return nil
}

func (c *csvWriter) end() error {
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	return nil
}

// jsonWriter writes one JSON object a row, one a line (NDJSON), keys in
// column order (a repeated column name gets _1, _2, ...).
type jsonWriter struct {
	w    io.Writer
	cols []resultColumn
	keys [][]byte
	buf  []byte
}

func (j *jsonWriter) header(cols []resultColumn) error {
	j.cols = cols
	seen := map[string]bool{}
	for _, c := range cols {
		k := c.name
		for n := 1; seen[k]; n++ {
			k = c.name + "_" + strconv.Itoa(n)
		}
		seen[k] = true
		j.keys = append(j.keys, append(appendJSONString(nil, k), ':'))
	}
	return nil
}

func (j *jsonWriter) row(vals []driver.Value) error {
	b := append(j.buf[:0], '{')
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, j.keys[i]...)
		b = appendJSON(b, v, j.cols[i].typ)
	}
	b = append(b, '}', '\n')
	j.buf = b
	if _, err := j.w.Write(b); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	return nil
}

func (j *jsonWriter) end() error { return nil }

// tableWriter writes aligned columns for people: the column names, a
// separator, the rows, then the row count. Columns are separated by " | ",
// numbers are right-aligned, NULL prints as NULL, control characters as
// escapes (\n, \t, \r, \x1b) so a row stays on one line. Values are never
// cut. It holds the whole result in memory to size the columns.
type tableWriter struct {
	w     io.Writer
	cols  []resultColumn
	head  []string
	right []bool
	rows  [][]string
}

func (t *tableWriter) header(cols []resultColumn) error {
	t.cols = cols
	for _, c := range cols {
		t.head = append(t.head, escapeControl(c.name))
		t.right = append(t.right, c.typ.numeric())
	}
	return nil
}

func (t *tableWriter) row(vals []driver.Value) error {
	r := make([]string, len(vals))
	for i, v := range vals {
		s, null := textValue(v, t.cols[i].typ)
		if null {
			s = "NULL"
		}
		r[i] = escapeControl(s)
	}
	t.rows = append(t.rows, r)
	return nil
}

func (t *tableWriter) end() error {
	var sb strings.Builder
	if len(t.cols) > 0 {
		widths := make([]int, len(t.cols))
		for i, h := range t.head {
			widths[i] = displayWidth(h)
		}
		for _, r := range t.rows {
			for i, s := range r {
				widths[i] = max(widths[i], displayWidth(s))
			}
		}
		line := func(cells []string) {
			for i, s := range cells {
				if i > 0 {
					sb.WriteString(" | ")
				}
				pad := strings.Repeat(" ", widths[i]-displayWidth(s))
				switch {
				case t.right[i]:
					sb.WriteString(pad + s)
				case i == len(cells)-1:
					sb.WriteString(s) // no trailing blanks
				default:
					sb.WriteString(s + pad)
				}
			}
			sb.WriteByte('\n')
		}
		line(t.head)
		for i, w := range widths {
			if i > 0 {
				sb.WriteString("-+-")
			}
			sb.WriteString(strings.Repeat("-", w))
		}
		sb.WriteByte('\n')
		for _, r := range t.rows {
			line(r)
		}
	}
	if len(t.rows) == 1 {
		sb.WriteString("(1 row)\n")
	} else {
		fmt.Fprintf(&sb, "(%d rows)\n", len(t.rows))
	}
	if _, err := io.WriteString(t.w, sb.String()); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	return nil
}

// escapeControl shows the control characters of s as escapes.
func escapeControl(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var sb strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r < 0x100 && unicode.IsControl(r):
			fmt.Fprintf(&sb, `\x%02x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// displayWidth is the number of terminal columns s takes: East Asian wide
// and fullwidth characters (and most emoji) two, combining marks and
// zero-width characters none.
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r == '\u200d' || unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf):
		case isWide(r):
			n += 2
		default:
			n++
		}
	}
	return n
}

// wideRanges are the East Asian Wide and Fullwidth ranges of Unicode
// (EastAsianWidth.txt, W and F), emoji presentation included, coarsened.
var wideRanges = [][2]rune{
	{0x1100, 0x115f}, {0x231a, 0x231b}, {0x2329, 0x232a}, {0x23e9, 0x23ec}, {0x23f0, 0x23f0},
	{0x23f3, 0x23f3}, {0x25fd, 0x25fe}, {0x2614, 0x2615}, {0x2648, 0x2653}, {0x267f, 0x267f},
	{0x2693, 0x2693}, {0x26a1, 0x26a1}, {0x26aa, 0x26ab}, {0x26bd, 0x26be}, {0x26c4, 0x26c5},
	{0x26ce, 0x26ce}, {0x26d4, 0x26d4}, {0x26ea, 0x26ea}, {0x26f2, 0x26f3}, {0x26f5, 0x26f5},
	{0x26fa, 0x26fa}, {0x26fd, 0x26fd}, {0x2705, 0x2705}, {0x270a, 0x270b}, {0x2728, 0x2728},
	{0x274c, 0x274c}, {0x274e, 0x274e}, {0x2753, 0x2755}, {0x2757, 0x2757}, {0x2795, 0x2797},
	{0x27b0, 0x27b0}, {0x27bf, 0x27bf}, {0x2b1b, 0x2b1c}, {0x2b50, 0x2b50}, {0x2b55, 0x2b55},
	{0x2e80, 0x303e}, {0x3041, 0x33ff}, {0x3400, 0x4dbf}, {0x4e00, 0x9fff}, {0xa000, 0xa4cf},
	{0xa960, 0xa97f}, {0xac00, 0xd7a3}, {0xf900, 0xfaff}, {0xfe10, 0xfe19}, {0xfe30, 0xfe6f},
	{0xff00, 0xff60}, {0xffe0, 0xffe6}, {0x16fe0, 0x16fe4}, {0x17000, 0x18cff}, {0x1b000, 0x1b2ff},
	{0x1f004, 0x1f004}, {0x1f0cf, 0x1f0cf}, {0x1f18e, 0x1f18e}, {0x1f191, 0x1f19a}, {0x1f200, 0x1f202},
	{0x1f210, 0x1f23b}, {0x1f240, 0x1f248}, {0x1f250, 0x1f251}, {0x1f260, 0x1f265}, {0x1f300, 0x1f320},
	{0x1f32d, 0x1f335}, {0x1f337, 0x1f37c}, {0x1f37e, 0x1f393}, {0x1f3a0, 0x1f3ca}, {0x1f3cf, 0x1f3d3},
	{0x1f3e0, 0x1f3f0}, {0x1f3f4, 0x1f3f4}, {0x1f3f8, 0x1f43e}, {0x1f440, 0x1f440}, {0x1f442, 0x1f4fc},
	{0x1f4ff, 0x1f53d}, {0x1f54b, 0x1f54e}, {0x1f550, 0x1f567}, {0x1f57a, 0x1f57a}, {0x1f595, 0x1f596},
	{0x1f5a4, 0x1f5a4}, {0x1f5fb, 0x1f64f}, {0x1f680, 0x1f6c5}, {0x1f6cc, 0x1f6cc}, {0x1f6d0, 0x1f6d2},
	{0x1f6d5, 0x1f6d7}, {0x1f6dc, 0x1f6df}, {0x1f6eb, 0x1f6ec}, {0x1f6f4, 0x1f6fc}, {0x1f7e0, 0x1f7eb},
	{0x1f7f0, 0x1f7f0}, {0x1f90c, 0x1f93a}, {0x1f93c, 0x1f945}, {0x1f947, 0x1f9ff}, {0x1fa70, 0x1faff},
	{0x20000, 0x2fffd}, {0x30000, 0x3fffd},
}

func isWide(r rune) bool {
	if r < 0x1100 {
		return false
	}
	_, found := slices.BinarySearchFunc(wideRanges, r, func(rg [2]rune, r rune) int {
		switch {
		case rg[1] < r:
			return -1
		case rg[0] > r:
			return 1
		}
		return 0
	})
	return found
}
