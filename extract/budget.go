package extract

import (
	"context"
	"sync"
)

// Memory bounds of the response data a client holds. They hold whatever
// the server sends: a page is refused past maxPageBytes, at most
// largeReads bodies are read past smallBody at once, and new requests wait
// while the pages not yet released hold softBudget.
const (
	// maxPageBytes is the largest response body accepted. Twilio's largest
	// pages (100 participants with 16 KB attributes each) are under 2 MB.
	maxPageBytes = 8 << 20
	// smallBody is what any response may read without a large-read slot.
	smallBody = 1 << 20
	// largeReads is how many bodies may be read past smallBody at once.
	largeReads = 8
	// softBudget is the memory held by unreleased pages above which new
	// requests wait (a page costs about twice its body once decoded).
	softBudget = 32 << 20
	// decodedFactor estimates a decoded page's memory from its body size.
	decodedFactor = 2
)

// budget accounts for the memory of pages a client handed out and not yet
// released, and gates requests on it. A request waits while the held
// memory is over the budget, unless it belongs to the oldest list walk
// that holds pages: that walk can always go on, so walks that keep their
// pages until their list is complete (a child list read whole) never wait
// for each other forever.
type budget struct {
	soft    int64
	mu      sync.Mutex
	held    int64
	walks   map[uint64]int64 // held bytes per walk ticket
	next    uint64
	changed chan struct{}
	large   chan struct{}
}

func newBudget(soft int64) *budget {
	return &budget{soft: soft, walks: map[uint64]int64{}, changed: make(chan struct{}), large: make(chan struct{}, largeReads)}
}

// walk registers a new list walk and returns its ticket.
func (b *budget) walk() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	return b.next
}

// admit waits until a request of the walk may be sent.
func (b *budget) admit(ctx context.Context, ticket uint64) error {
	for {
		b.mu.Lock()
		if b.held < b.soft || b.oldestHolder() == ticket {
			b.mu.Unlock()
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// oldestHolder is the smallest ticket holding memory (0 for none); call
// with mu held.
func (b *budget) oldestHolder() uint64 {
	var oldest uint64
	for t := range b.walks {
		if oldest == 0 || t < oldest {
			oldest = t
		}
	}
	return oldest
}

// hold records n bytes held by the walk.
func (b *budget) hold(ticket uint64, n int64) {
	b.mu.Lock()
	b.held += n
	b.walks[ticket] += n
	b.mu.Unlock()
}

// release returns n bytes the walk held.
func (b *budget) release(ticket uint64, n int64) {
	b.mu.Lock()
	b.held -= n
	if b.walks[ticket] -= n; b.walks[ticket] <= 0 {
		delete(b.walks, ticket)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// Held returns the memory held by unreleased pages.
func (b *budget) Held() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held
}

// acquireLarge takes a large-read slot.
func (b *budget) acquireLarge(ctx context.Context) error {
	select {
	case b.large <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (b *budget) releaseLarge() { <-b.large }
