package pipeline

import (
	"sync"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Dedup remembers which events each action settled, so that events the stream sends
// again within one process lifetime (after a reconnect) are not delivered twice.
//
// Stream order proves most events new without a lookup: per action, an event above the
// highest id the action has settled cannot be a repeat, and one at or below its
// contiguous settled watermark cannot be new. Only ids between the two (settled out of
// order by concurrent workers, then sent again after a reconnect) need the set of
// settled ids, so the set holds about the action's in-flight window, not every event.
// Snapshot rows (READ), whose ids name the chunk that read them rather than a place in
// the stream, are remembered by id in a set bounded by the configured entries (oldest
// forgotten first). A pair it has forgotten is delivered again, never lost.
// Dedup is safe for concurrent use.
type Dedup struct {
	max int

	mu      sync.Mutex
	actions map[string]*actionDedup
}

// NewDedup returns a Dedup holding at most entries settled ids per action above its
// watermark (and as many snapshot row ids).
func NewDedup(entries int64) (*Dedup, error) {
	if entries <= 0 {
		entries = 100_000
	}
	return &Dedup{max: int(entries), actions: map[string]*actionDedup{}}, nil
}

// action returns the state of one action, creating it.
func (d *Dedup) action(id string) *actionDedup {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.actions[id]
	if a == nil {
		a = &actionDedup{max: d.max, window: map[lsn.Position]struct{}{}, pruneAt: minPrune, reads: map[lsn.Position]struct{}{}}
		d.actions[id] = a
	}
	return a
}

// Seen reports whether the action settled the event id (a stream event).
func (d *Dedup) Seen(action string, id lsn.Position) bool { return d.action(action).seen(id, false) }

// Add records that the action settled the stream event id.
func (d *Dedup) Add(action string, id lsn.Position) { d.action(action).add(id, false, nil) }

// Wait is kept for callers that waited for the former asynchronous cache; recorded
// ids are visible to Seen at once.
func (d *Dedup) Wait() {}

// Len returns how many ids the sets hold over all actions (the in-flight windows and
// the snapshot row ids).
func (d *Dedup) Len() uint64 {
	d.mu.Lock()
	as := make([]*actionDedup, 0, len(d.actions))
	for _, a := range d.actions {
		as = append(as, a)
	}
	d.mu.Unlock()
	var n uint64
	for _, a := range as {
		a.mu.Lock()
		n += uint64(len(a.window) + len(a.reads))
		a.mu.Unlock()
	}
	return n
}

// Close releases nothing; kept for symmetry with the row cache.
func (d *Dedup) Close() {}

// minPrune is the window size at which the first pruning runs.
const minPrune = 1024

// actionDedup is the dedup state of one action.
type actionDedup struct {
	mu  sync.Mutex
	max int
	// high is the highest stream event id settled; ids above it are new.
	high    lsn.Position
	hasHigh bool
	// floor is the action's watermark at the last pruning: every id at or below it
	// was settled (the LSN-ordering rule that also skips them at dispatch).
	floor    lsn.Position
	hasFloor bool
	// window holds the settled ids above floor.
	window  map[lsn.Position]struct{}
	pruneAt int
	// reads holds settled snapshot row ids, readOrder their insertion order.
	reads     map[lsn.Position]struct{}
	readOrder []lsn.Position
}

// seen reports whether id was settled; read says it is a snapshot row's id.
func (a *actionDedup) seen(id lsn.Position, read bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if read {
		_, ok := a.reads[id]
		return ok
	}
	if a.hasFloor && id.Compare(a.floor) <= 0 {
		return true
	}
	if !a.hasHigh || id.Compare(a.high) > 0 {
		return false
	}
	_, ok := a.window[id]
	return ok
}

// add records that id was settled. acked returns the action's watermark (everything
// at or below it settled); it is called only when the window has grown enough to be
// pruned, and may be nil.
func (a *actionDedup) add(id lsn.Position, read bool, acked func() (lsn.Position, bool)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if read {
		if _, ok := a.reads[id]; ok {
			return
		}
		if len(a.readOrder) >= a.max {
			delete(a.reads, a.readOrder[0])
			a.readOrder = a.readOrder[1:]
		}
		a.reads[id] = struct{}{}
		a.readOrder = append(a.readOrder, id)
		return
	}
	if a.hasFloor && id.Compare(a.floor) <= 0 {
		return
	}
	if !a.hasHigh || id.Compare(a.high) > 0 {
		a.high, a.hasHigh = id, true
	}
	if len(a.window) >= a.pruneAt && acked != nil {
		if w, ok := acked(); ok && (!a.hasFloor || w.Compare(a.floor) > 0) {
			a.floor, a.hasFloor = w, true
			for p := range a.window {
				if p.Compare(w) <= 0 {
					delete(a.window, p)
				}
			}
		}
		a.pruneAt = max(minPrune, 2*len(a.window))
		if id.Compare(a.floor) <= 0 {
			return
		}
	}
	if len(a.window) >= a.max {
		return // forgotten: delivered again if the stream sends it again
	}
	a.window[id] = struct{}{}
}
