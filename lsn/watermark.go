package lsn

import "sync"

// Ticket identifies one dispatched position in a Watermark. Tickets are handed out in
// dispatch order starting at 1; the zero Ticket is never issued.
type Ticket uint64

// Watermark tracks positions as they are dispatched (in stream order) and acknowledged
// (in any order), and reports the highest position below which everything dispatched
// has been acknowledged: the position that may safely be confirmed.
//
// Positions need not increase from one dispatch to the next (a replay after a reconnect
// dispatches positions again); Acked reports the greatest position over the longest
// fully acknowledged prefix of dispatches, which is safe either way.
//
// A Watermark is safe for concurrent use. Dispatch and Ack do not allocate once the
// internal ring has grown to the number of positions in flight.
type Watermark[P any] struct {
	mu      sync.Mutex
	cmp     func(a, b P) int
	ring    []slot[P]
	head    int    // index in ring of the oldest outstanding dispatch
	n       int    // dispatches in ring (acknowledged or not) after head
	next    Ticket // ticket of the next Dispatch
	acked   P      // greatest position over the acknowledged prefix
	hasAck  bool
	pending int // dispatched and not yet acknowledged
}

type slot[P any] struct {
	pos  P
	done bool
}

// NewWatermark returns an empty Watermark ordering positions with cmp.
func NewWatermark[P any](cmp func(a, b P) int) *Watermark[P] {
	return &Watermark[P]{cmp: cmp, ring: make([]slot[P], 64), next: 1}
}

// Dispatch records that p has been handed on and returns the ticket to acknowledge it.
func (w *Watermark[P]) Dispatch(p P) Ticket {
	w.mu.Lock()
	if w.n == len(w.ring) {
		w.grow()
	}
	w.ring[(w.head+w.n)%len(w.ring)] = slot[P]{pos: p}
	w.n++
	w.pending++
	t := w.next
	w.next++
	w.mu.Unlock()
	return t
}

func (w *Watermark[P]) grow() {
	ring := make([]slot[P], 2*len(w.ring))
	for i := 0; i < w.n; i++ {
		ring[i] = w.ring[(w.head+i)%len(w.ring)]
	}
	w.ring = ring
	w.head = 0
}

// Ack acknowledges the position dispatched under t. It reports false, changing
// nothing, for a ticket that is not outstanding (never issued or already acknowledged).
func (w *Watermark[P]) Ack(t Ticket) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	first := w.next - Ticket(w.n) // ticket of ring[head]
	if t < first || t >= w.next {
		return false
	}
	i := (w.head + int(t-first)) % len(w.ring)
	if w.ring[i].done {
		return false
	}
	w.ring[i].done = true
	w.pending--
	for w.n > 0 && w.ring[w.head].done {
		w.raise(w.ring[w.head].pos)
		var zero slot[P]
		w.ring[w.head] = zero
		w.head = (w.head + 1) % len(w.ring)
		w.n--
	}
	return true
}

func (w *Watermark[P]) raise(p P) {
	if !w.hasAck || w.cmp(p, w.acked) > 0 {
		w.acked = p
		w.hasAck = true
	}
}

// Acked returns the greatest position over the acknowledged prefix of dispatches, and
// false while nothing has been acknowledged (or set with Advance) yet.
func (w *Watermark[P]) Acked() (P, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.hasAck
}

// Outstanding returns how many dispatched positions are not yet acknowledged.
func (w *Watermark[P]) Outstanding() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending
}

// Done reports whether t and every ticket issued before it have been acknowledged, so
// that nothing dispatched up to t is outstanding: a caller that dispatched a group of
// positions learns that all of them are settled from the last one's ticket. Tickets
// forgotten by Reset count as done; the zero Ticket is always done.
func (w *Watermark[P]) Done(t Ticket) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return t < w.next-Ticket(w.n) // the ticket of ring[head], the oldest kept dispatch
}

// Advance raises the acknowledged position to p if nothing is outstanding, as when
// a keepalive reports WAL that holds nothing for us. It reports whether it did so;
// it never lowers the position.
func (w *Watermark[P]) Advance(p P) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n != 0 {
		return false
	}
	w.raise(p)
	return true
}

// Reset forgets every outstanding dispatch and sets the acknowledged position to p,
// as at the start of a session. Tickets issued before Reset are no longer outstanding.
func (w *Watermark[P]) Reset(p P) {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.ring)
	w.head, w.n, w.pending = 0, 0, 0
	w.acked, w.hasAck = p, true
}
