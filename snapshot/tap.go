package snapshot

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Prefix is the prefix of the logical decoding messages a snapshot writes as low and
// high watermarks. The service consumes them: they never reach an observer.
const Prefix = "fraiseql-observers.snapshot"

// tap watches the stream for the tables being snapshotted. It runs on the replication
// session's goroutine (cdc.Interceptor), in stream order:
//
//   - every change of a watched table is recorded with its transaction id (history),
//     and, between a chunk's low and high watermark, in the chunk's window;
//   - at the chunk's high watermark, the rows of the chunk whose key is in the window,
//     or was changed by a transaction the chunk's read did not see (history), are
//     dropped: the stream carries a newer image of them. The others are handed on
//     right there, at the high watermark's place in the stream.
//
// A chunk's rows are the table as its read saw it. A change the stream delivered
// before the high watermark is either seen by that read (older than the row read) or
// in the window or history (its row is dropped); a change after the high watermark
// committed after the read and is delivered after the rows. So no row read from the
// table overwrites a newer change, and each row's events stay in commit order.
type tap struct {
	active atomic.Int32 // watched tables; the stream pays nothing while 0

	mu      sync.Mutex
	watches map[uint32]*watch // by table OID (the stream's RelationID)
	chunks  map[string]*chunk // by nonce, from before the low watermark to the high one
}

func newTap() *tap {
	return &tap{watches: map[uint32]*watch{}, chunks: map[string]*chunk{}}
}

// watch is one table being snapshotted.
type watch struct {
	t *table
	// history holds the changes decoded since the watch started that the last chunk
	// read did not see, and the changes decoded since; pruned at each high watermark
	// (and by probes) of the changes a snapshot saw.
	history []change
	open    *chunk   // the chunk whose low watermark was seen and high one not yet
	pending []*chunk // chunks expected and not yet at their high watermark, in order
}

// change is one row change of a watched table: the transaction that made it and the
// key of the row (all: a TRUNCATE; unknown: the key could not be read from it).
type change struct {
	xid          uint32
	key          string
	all, unknown bool
}

// chunk is a chunk of rows between its watermarks.
type chunk struct {
	w     *watch
	nonce string
	low   bool                // the low watermark was seen
	keys  map[string]struct{} // keys changed in the window
	all   bool                // the table was truncated in the window
	// unknown: a change in the window whose key could not be read
	unknown bool

	// Set by the reader before it writes the high watermark.
	ready  bool
	events []*decoder.Event
	keyOf  []string // keyOf[i] is the key of events[i]
	snap   xidSnapshot

	done chan chunkResult // receives once, at the high watermark
}

// chunkResult is what became of a chunk at its high watermark.
type chunkResult struct {
	sent  int        // rows handed on
	last  lsn.Ticket // the ticket of the last one (0: none)
	retry bool       // a change could not be matched with the rows: read the chunk again
}

// watch starts watching t's changes; a watch must be ended with unwatch.
func (tp *tap) watch(t *table) *watch {
	w := &watch{t: t}
	tp.mu.Lock()
	tp.watches[t.OID] = w
	tp.mu.Unlock()
	tp.active.Add(1)
	return w
}

// unwatch ends a watch and forgets its chunks.
func (tp *tap) unwatch(w *watch) {
	tp.mu.Lock()
	if tp.watches[w.t.OID] == w {
		delete(tp.watches, w.t.OID)
		tp.active.Add(-1)
	}
	for n, c := range tp.chunks {
		if c.w == w {
			delete(tp.chunks, n)
		}
	}
	w.history, w.open, w.pending = nil, nil, nil
	tp.mu.Unlock()
}

// expect registers a chunk before its low watermark is written.
func (tp *tap) expect(w *watch, nonce string) *chunk {
	c := &chunk{w: w, nonce: nonce, keys: map[string]struct{}{}, done: make(chan chunkResult, 1)}
	tp.mu.Lock()
	tp.chunks[nonce] = c
	w.pending = append(w.pending, c)
	tp.mu.Unlock()
	return c
}

// forget removes c from the chunks expected (its high watermark came, or it was
// given up).
func (tp *tap) forget(c *chunk) {
	delete(tp.chunks, c.nonce)
	if c.w.open == c {
		c.w.open = nil
	}
	for i, p := range c.w.pending {
		if p == c {
			c.w.pending = append(c.w.pending[:i], c.w.pending[i+1:]...)
			break
		}
	}
}

// fill hands the chunk's rows to the tap; the reader writes the high watermark after.
func (tp *tap) fill(c *chunk, events []*decoder.Event, keyOf []string, snap xidSnapshot) {
	tp.mu.Lock()
	c.events, c.keyOf, c.snap, c.ready = events, keyOf, snap, true
	tp.mu.Unlock()
}

// abandon forgets a chunk that will not get its high watermark (its read failed).
func (tp *tap) abandon(c *chunk) {
	tp.mu.Lock()
	tp.forget(c)
	c.events, c.keyOf = nil, nil
	tp.mu.Unlock()
}

// prune drops from w's history the changes snap sees: every later snapshot sees them
// too. Readers call it with a fresh snapshot while they wait, so that the history of a
// busy table stays small between chunks. It does nothing while a chunk of w is expected:
// that chunk's read may be older than snap and need the history.
func (tp *tap) prune(w *watch, snap xidSnapshot) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if len(w.pending) == 0 {
		w.prune(snap)
	}
}

func (w *watch) prune(snap xidSnapshot) {
	kept := w.history[:0]
	for _, h := range w.history {
		if !snap.sees(h.xid) {
			kept = append(kept, h)
		}
	}
	clear(w.history[len(kept):])
	w.history = kept
}

// historyLen returns the number of changes w remembers.
func (tp *tap) historyLen(w *watch) int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(w.history)
}

// Intercept implements cdc.Interceptor: it consumes watermarks (ours, and stale ones
// from earlier runs), records the changes of watched tables and hands chunks on.
func (tp *tap) Intercept(ev *decoder.Event, in cdc.Injector) bool {
	isMark := ev.Op == decoder.OpMessage && ev.Message != nil && ev.Message.Prefix == Prefix
	if tp.active.Load() == 0 {
		return !isMark
	}
	switch {
	case isMark:
		tp.mu.Lock()
		tp.watermark(string(ev.Message.Content), in)
		tp.mu.Unlock()
		return false
	case ev.Op == decoder.OpInsert, ev.Op == decoder.OpUpdate, ev.Op == decoder.OpDelete, ev.Op == decoder.OpTruncate:
		tp.mu.Lock()
		if w := tp.watches[ev.RelationID]; w != nil {
			w.record(ev)
		}
		tp.mu.Unlock()
	}
	return true
}

// record notes a change of the watched table.
func (w *watch) record(ev *decoder.Event) {
	// A change the oldest pending chunk's read saw is seen by every later read too:
	// no chunk needs it in the history. This keeps the history small while the stream
	// catches up with a backlog (old transactions) behind the chunks' watermarks.
	seen := len(w.pending) > 0 && w.pending[0].ready && w.pending[0].snap.sees(ev.Xid)
	add := func(ch change) {
		ch.xid = ev.Xid
		if !seen {
			w.history = append(w.history, ch)
		}
		if c := w.open; c != nil {
			switch {
			case ch.all:
				c.all = true
			case ch.unknown:
				c.unknown = true
			default:
				c.keys[ch.key] = struct{}{}
			}
		}
	}
	keyOf := func(r *decoder.Row) {
		if k, ok := w.t.streamKey(r); ok {
			add(change{key: k})
		} else {
			add(change{unknown: true})
		}
	}
	switch ev.Op {
	case decoder.OpTruncate:
		add(change{all: true})
	case decoder.OpInsert:
		keyOf(ev.New)
	case decoder.OpUpdate:
		keyOf(ev.New)
		if ev.Old != nil && (ev.OldKind == decoder.OldKey || ev.OldKind == decoder.OldFull) {
			keyOf(ev.Old) // the key may have changed
		}
	case decoder.OpDelete:
		keyOf(ev.Old)
	}
}

// watermark handles one of our messages: "low|high <snapshot> <chunk> <nonce>".
func (tp *tap) watermark(content string, in cdc.Injector) {
	f := strings.Fields(content)
	if len(f) != 4 {
		return
	}
	c := tp.chunks[f[3]]
	if c == nil {
		return // a watermark of an earlier run, or of a chunk given up
	}
	w := c.w
	switch f[0] {
	case "low":
		c.low = true
		w.open = c
	case "high":
		tp.forget(c)
		var res chunkResult
		if !c.low || !c.ready {
			res.retry = true // cannot happen: the reader writes low, fills, then writes high
		} else {
			res = c.handOn(in)
			w.prune(c.snap)
		}
		c.events, c.keyOf = nil, nil
		c.done <- res
	}
}

// handOn drops the rows the stream changed in the window or unseen by the read, and
// injects the others.
func (c *chunk) handOn(in cdc.Injector) chunkResult {
	all, unknown := c.all, c.unknown
	drop := c.keys
	for _, h := range c.w.history {
		if c.snap.sees(h.xid) {
			continue
		}
		switch {
		case h.all:
			all = true
		case h.unknown:
			unknown = true
		default:
			drop[h.key] = struct{}{}
		}
	}
	var res chunkResult
	switch {
	case unknown:
		res.retry = true
	case all:
		// The table was truncated after the read: none of its rows exists any more.
	default:
		for i, ev := range c.events {
			if _, changed := drop[c.keyOf[i]]; changed {
				continue
			}
			res.last = in.Inject(ev)
			res.sent++
		}
	}
	return res
}

// streamKey returns the chunk key of a row image of a streamed change, or false when
// the image does not hold every key column.
func (t *table) streamKey(r *decoder.Row) (string, bool) {
	if r == nil {
		return "", false
	}
	var b strings.Builder
	for i, name := range t.ChunkKey {
		v, ok := r.Get(name)
		if !ok {
			return "", false
		}
		if i > 0 {
			b.WriteByte(0)
		}
		b.Write(v)
	}
	return b.String(), true
}

// readKey returns the chunk key of a row read from the table (columns in Desc order).
func (t *table) readKey(r *decoder.Row) string {
	var b strings.Builder
	for i, j := range t.KeyIndex {
		if i > 0 {
			b.WriteByte(0)
		}
		b.Write(r.Values[j])
	}
	return b.String()
}
