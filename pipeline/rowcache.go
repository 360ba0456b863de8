package pipeline

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// RowCache keeps the latest complete image of recently changed rows, keyed by table
// and primary key, filled from the stream in commit order. It supplies the old image
// of an UPDATE (or DELETE) when PostgreSQL sent only the key (REPLICA IDENTITY DEFAULT),
// marking it old_kind "cached", and fills unchanged TOAST columns PostgreSQL did not
// send. It never produces a wrong value: only images that passed through the stream
// since the cache was last reset are used, and it is reset when the stream goes back
// (a replay after a reconnect), per table on TRUNCATE, and per table when its
// Relation changes. A row it has not seen is a miss, never a guess.
//
// The images are stored without a pointer per row (see rowStore), within a byte budget
// that counts the whole of the cache's storage; the oldest images are evicted first.
//
// The router alone calls apply and reset; Stats is safe for concurrent use.
type RowCache struct {
	// Router-only state.
	store *rowStore
	rels  map[uint32]relEpoch // per relation id: the relation and its key epoch
	epoch uint64              // the last epoch handed out
	keys  [2][]byte           // scratch space for the keys of one event

	hits, misses atomic.Uint64
	// Published by the router after each event it applies, for Stats.
	entries, costBytes, evicted, rejected atomic.Uint64

	mHits   *metrics.Counter
	mMisses *metrics.Counter
	mResets *metrics.Counter
}

// relEpoch is what a row's key is made of besides its key values: images of a row are
// found again only while the relation is the same Relation and no TRUNCATE came since.
type relEpoch struct {
	rel   *decoder.Relation
	epoch uint64
}

// NewRowCache returns a cache whose storage holds at most about maxBytes (16 MiB when
// maxBytes is not positive). The memory is allocated as images arrive.
func NewRowCache(maxBytes int64, set *metrics.Set) (*RowCache, error) {
	if maxBytes <= 0 {
		maxBytes = 16 << 20
	}
	if set == nil {
		set = metrics.NewSet()
	}
	rc := &RowCache{store: newRowStore(maxBytes), rels: map[uint32]relEpoch{},
		mHits:   set.GetOrCreateCounter("observer_cache_hits_total"),
		mMisses: set.GetOrCreateCounter("observer_cache_misses_total"),
		mResets: set.GetOrCreateCounter("observer_cache_resets_total"),
	}
	set.GetOrCreateGauge("observer_cache_hit_rate", func() float64 {
		h, m := rc.hits.Load(), rc.misses.Load()
		if h+m == 0 {
			return 0
		}
		return float64(h) / float64(h+m)
	})
	return rc, nil
}

// CacheStats is a snapshot of the row cache.
type CacheStats struct {
	Hits, Misses uint64
	HitRate      float64
	// Entries is the number of rows with an image; CostBytes the memory the cache
	// counts against caching.max_bytes (its storage and index).
	Entries   uint64
	CostBytes uint64
	// Evicted counts images dropped to stay within the budget, Rejected images too
	// large to be kept (half the budget or more).
	Evicted  uint64
	Rejected uint64
}

// Stats returns a snapshot; safe for concurrent use.
func (rc *RowCache) Stats() CacheStats {
	s := CacheStats{Hits: rc.hits.Load(), Misses: rc.misses.Load(), Entries: rc.entries.Load(),
		CostBytes: rc.costBytes.Load(), Evicted: rc.evicted.Load(), Rejected: rc.rejected.Load()}
	if s.Hits+s.Misses > 0 {
		s.HitRate = float64(s.Hits) / float64(s.Hits+s.Misses)
	}
	return s
}

// Close does nothing: the cache starts no goroutine, and its memory goes with it. It
// never touches the images, so it is safe while a router that did not stop in time
// still runs.
func (rc *RowCache) Close() {}

// reset forgets every image: the stream went back to an earlier position.
func (rc *RowCache) reset() {
	rc.store.reset()
	rc.publish()
	rc.mResets.Inc()
}

// key builds in rc.keys[slot] the store key of the row with key values k: the relation
// id, its epoch and the length-prefixed key values.
func (rc *RowCache) key(slot int, ev *decoder.Event, k *decoder.Row) []byte {
	b := binary.LittleEndian.AppendUint32(rc.keys[slot][:0], ev.RelationID)
	b = binary.LittleEndian.AppendUint64(b, rc.rels[ev.RelationID].epoch)
	for _, v := range k.Values {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	rc.keys[slot] = b
	return b
}

// follow starts a new epoch for the relation of ev when it is not the Relation the
// cached images were made with.
func (rc *RowCache) follow(ev *decoder.Event) {
	if e, ok := rc.rels[ev.RelationID]; !ok || e.rel != ev.Relation {
		rc.epoch++
		rc.rels[ev.RelationID] = relEpoch{rel: ev.Relation, epoch: rc.epoch}
	}
}

func (rc *RowCache) get(k []byte, rel *decoder.Relation) *decoder.Row {
	vals, ok := rc.store.get(k, len(rel.Names))
	if !ok {
		rc.misses.Add(1)
		rc.mMisses.Inc()
		return nil
	}
	rc.hits.Add(1)
	rc.mHits.Inc()
	return &decoder.Row{Names: rel.Names, Values: vals}
}

// apply uses and updates the cache for one event, in stream order. It returns what the
// cache supplies for the event, and false when it supplies nothing; it does not modify
// the event (the router completes it with filled.complete before dispatching it).
func (rc *RowCache) apply(ev *decoder.Event) (f filled, ok bool) {
	rel := ev.Relation
	switch ev.Op {
	case decoder.OpTruncate:
		e := rc.rels[ev.RelationID]
		rc.epoch++
		e.epoch = rc.epoch
		rc.rels[ev.RelationID] = e
		return f, false
	case decoder.OpInsert, decoder.OpUpdate, decoder.OpDelete:
	default:
		return f, false
	}
	if rel == nil || ev.Key == nil || ev.Key.Len() == 0 {
		return f, false // no key: the row cannot be found again
	}
	rc.follow(ev)
	newKey := rc.key(0, ev, ev.Key)
	switch ev.Op {
	case decoder.OpInsert:
		rc.put(newKey, rel, ev.New)
	case decoder.OpUpdate:
		oldKey := newKey
		if ev.OldKind == decoder.OldKey && ev.Old != nil {
			oldKey = rc.key(1, ev, ev.Old) // the key changed: PostgreSQL sent the old one
		}
		if ev.OldKind == decoder.OldNone || ev.OldKind == decoder.OldKey {
			if img := rc.get(oldKey, rel); img != nil {
				f, ok = fill(ev, img), true
			}
		}
		if !bytes.Equal(oldKey, newKey) {
			rc.store.del(oldKey)
		}
		row := ev.New
		if f.new != nil {
			row = f.new // the new latest image is the filled one
		}
		rc.put(newKey, rel, row)
	case decoder.OpDelete:
		if ev.OldKind != decoder.OldFull {
			if img := rc.get(newKey, rel); img != nil {
				f, ok = filled{old: img}, true
			}
		}
		rc.store.del(newKey)
	}
	rc.publish()
	return f, ok
}

// put records the row's latest image, or forgets the row when the image is incomplete
// (or its columns are not the relation's, in its order).
func (rc *RowCache) put(k []byte, rel *decoder.Relation, row *decoder.Row) {
	if row == nil || !slices.Equal(row.Names, rel.Names) {
		rc.store.del(k)
		return
	}
	rc.store.put(k, row.Values)
}

// publish makes the store's figures visible to Stats.
func (rc *RowCache) publish() {
	s := rc.store
	rc.entries.Store(uint64(s.len()))
	rc.costBytes.Store(uint64(s.bytes()))
	rc.evicted.Store(s.evicted)
	rc.rejected.Store(s.rejected)
}

// filled is what the row cache supplies for one event from the image of the row it
// kept: the old image (old_kind "cached") and, for an UPDATE, the new image with the
// unchanged TOAST columns filled in and the columns that changed.
type filled struct {
	old *decoder.Row
	// new replaces the event's New, and unavailable its Unavailable, when new is set.
	new         *decoder.Row
	unavailable []string
	// changed replaces the event's Changed when set.
	changed []string
}

// complete puts what the cache supplied into ev, which no other goroutine sees yet.
func (f *filled) complete(ev *decoder.Event) {
	if f.new != nil {
		ev.New, ev.Unavailable = f.new, f.unavailable
	}
	ev.Old, ev.OldKind = f.old, decoder.OldCached
	if f.changed != nil {
		ev.Changed = f.changed
	}
}

// valueBytes returns ev.ValueBytes() as complete would make it.
func (f *filled) valueBytes(ev *decoder.Event) int {
	n := 0
	for _, r := range [...]*decoder.Row{f.old, f.new} {
		if r != nil {
			for _, v := range r.Values {
				n += len(v)
			}
		}
	}
	if f.new == nil && ev.New != nil {
		for _, v := range ev.New.Values {
			n += len(v)
		}
	}
	return n
}

// fill completes an UPDATE from the cached image of the row before it: the old image,
// the unchanged TOAST columns of the new one, and the changed columns.
func fill(ev *decoder.Event, img *decoder.Row) filled {
	f := filled{old: img}
	newRow := ev.New
	if ev.New != nil && len(ev.Unavailable) > 0 {
		names := ev.Relation.Names
		vals := make([]json.RawMessage, 0, len(names))
		var still []string
		for _, n := range names {
			if v, ok := ev.New.Get(n); ok {
				vals = append(vals, v)
			} else if v, ok := img.Get(n); ok {
				vals = append(vals, v)
			} else {
				still = append(still, n)
			}
		}
		if len(still) == 0 {
			f.new = &decoder.Row{Names: names, Values: vals}
		} else {
			f.new = rebuild(names, vals, still)
		}
		f.unavailable, newRow = still, f.new
	}
	if newRow == nil || newRow.Len() != img.Len() {
		return f
	}
	f.changed = []string{}
	for i, n := range newRow.Names {
		if !bytes.Equal(newRow.Values[i], img.Values[i]) {
			f.changed = append(f.changed, n)
		}
	}
	return f
}

// rebuild makes a row of names minus the missing ones, with vals in that order.
func rebuild(names []string, vals []json.RawMessage, missing []string) *decoder.Row {
	out := &decoder.Row{Names: make([]string, 0, len(vals)), Values: vals}
	skip := map[string]bool{}
	for _, m := range missing {
		skip[m] = true
	}
	for _, n := range names {
		if !skip[n] {
			out.Names = append(out.Names, n)
		}
	}
	return out
}
