package jobs

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/convsync/convsync/extract"
	"github.com/convsync/convsync/schemas"
)

// keyer reads the key of an API object of one table: the fields its key
// columns come from (schemas.Table.KeySources, the API's ones), each of
// which must be a non-empty string.
type keyer struct {
	fields []string
}

func newKeyer(t schemas.Table) keyer {
	var k keyer
	for _, s := range t.KeySources() {
		if !strings.HasPrefix(s, "$") {
			k.fields = append(k.fields, s)
		}
	}
	return k
}

// hash returns a stable 64-bit hash of o's key, or an error naming the
// key field that is missing or not a string.
func (k keyer) hash(o extract.Object) (uint64, error) {
	h := fnv.New64a()
	for _, f := range k.fields {
		v := o.Get(f)
		if v == nil || v.Type() != fastjson.TypeString {
			return 0, fmt.Errorf("an object whose %s is %s, not a string: %w", f, kind(v), extract.ErrUntrusted)
		}
		b, _ := v.StringBytes()
		if len(b) == 0 {
			return 0, fmt.Errorf("an object whose %s is empty: %w", f, extract.ErrUntrusted)
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	return h.Sum64(), nil
}

func kind(v *fastjson.Value) string {
	if v == nil {
		return "missing"
	}
	return v.Type().String()
}

// sidOf returns the object's sid (a copy, so it outlives the page).
func sidOf(o extract.Object) string { return string(o.GetStringBytes("sid")) }

// dedup drops objects whose key was seen before in the same list walk
// (Twilio's cursors can repeat a row when data changes during the walk),
// and fails a page that brings nothing new (a cycle that changes its page
// tokens). A child list, at most 1,000 objects, remembers every key; a
// long list remembers the keys of its last two pages, which is where a
// drifting cursor repeats rows, so its memory stays that of a page.
type dedup struct {
	k        keyer
	window   bool
	seen     map[uint64]struct{}
	prev     map[uint64]struct{}
	dropped  int64
	pageKeys []uint64 // the keys of the last page, for a checkpoint
}

func newDedup(k keyer, window bool, prior []uint64) *dedup {
	d := &dedup{k: k, window: window, seen: map[uint64]struct{}{}}
	for _, h := range prior {
		d.seen[h] = struct{}{}
	}
	return d
}

// page returns the page's objects that are new, in order.
func (d *dedup) page(items []extract.Object) ([]extract.Object, error) {
	if d.window {
		d.prev, d.seen = d.seen, map[uint64]struct{}{}
	}
	out := items[:0:0]
	d.pageKeys = d.pageKeys[:0]
	for i, o := range items {
		h, err := d.k.hash(o)
		if err != nil {
			return nil, fmt.Errorf("member %d: %w", i, err)
		}
		_, dup := d.seen[h]
		if !dup && d.prev != nil {
			_, dup = d.prev[h]
		}
		if dup {
			d.dropped++
			continue
		}
		d.seen[h] = struct{}{}
		d.pageKeys = append(d.pageKeys, h)
		out = append(out, o)
	}
	if len(items) > 0 && len(out) == 0 {
		return nil, fmt.Errorf("a page that brings nothing new (every row was on an earlier page): %w", extract.ErrUntrusted)
	}
	return out, nil
}
