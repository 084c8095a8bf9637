package extract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/valyala/fastjson"
)

// Object is one API resource of a page, decoded once by fastjson; it is
// valid until its page is released.
type Object = *fastjson.Value

// Page is one page of a list: its objects, decoded straight from the
// response body, and the memory they hold until Release.
type Page struct {
	// Items are the page's objects, each a JSON object.
	Items []Object
	// Bytes is the size of the response body.
	Bytes int64

	parser *fastjson.Parser
	b      *budget
	ticket uint64
	held   int64
	once   sync.Once
}

// Release returns the page's memory; its objects must not be used after.
// It is safe to call more than once.
func (p *Page) Release() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		p.Items = nil
		if p.parser != nil {
			parsers.Put(p.parser)
			p.parser = nil
		}
		if p.b != nil {
			p.b.release(p.ticket, p.held)
		}
	})
}

var parsers sync.Pool

func getParser() *fastjson.Parser {
	if p, ok := parsers.Get().(*fastjson.Parser); ok {
		return p
	}
	return new(fastjson.Parser)
}

// errBodyTooLarge is returned for a response body over maxPageBytes.
var errBodyTooLarge = fmt.Errorf("response body larger than %d MiB", maxPageBytes>>20)

var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// readBody reads a response body of at most maxPageBytes: the first
// smallBody bytes freely, the rest holding one of the client's large-read
// slots, so that however many responses are in flight only a few large
// bodies are read at once. The returned buffer goes back with putBody.
func readBody(ctx context.Context, b *budget, r io.Reader) (*[]byte, error) {
	bp := bodyBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	large := false
	defer func() {
		if large {
			b.releaseLarge()
		}
	}()
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= smallBody && !large {
				if err := b.acquireLarge(ctx); err != nil {
					*bp = buf
					putBody(bp)
					return nil, err
				}
				large = true
			}
			// Grow by doubling, but never past what a body may hold (one
			// byte more tells a body that is too large), nor past smallBody
			// before the large-read slot is taken.
			size := min(max(2*cap(buf), 64<<10), maxPageBytes+1)
			if !large {
				size = min(size, smallBody)
			}
			grown := make([]byte, len(buf), size)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > maxPageBytes {
			*bp = buf
			putBody(bp)
			return nil, errBodyTooLarge
		}
		if errors.Is(err, io.EOF) {
			*bp = buf
			return bp, nil
		}
		if err != nil {
			*bp = buf
			putBody(bp)
			return nil, err
		}
	}
}

// putBody returns a body buffer to the pool, keeping only modest ones.
func putBody(bp *[]byte) {
	if cap(*bp) <= smallBody {
		*bp = (*bp)[:0]
		bodyBufs.Put(bp)
	}
}
