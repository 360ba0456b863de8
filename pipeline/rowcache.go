package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/dgraph-io/ristretto/v2"

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
// The router alone calls apply and endBatch; Stats is safe for concurrent use.
type RowCache struct {
	c *ristretto.Cache[string, *cachedRow]
	// Router-only state.
	gen   map[uint32]uint64     // per relation: bumped by TRUNCATE
	batch map[string]*cachedRow // images set during the current batch (nil: deleted)

	hits, misses atomic.Uint64
	mHits        *metrics.Counter
	mMisses      *metrics.Counter
	mResets      *metrics.Counter
}

type cachedRow struct {
	rel *decoder.Relation
	row *decoder.Row
}

// NewRowCache returns a cache holding about maxBytes of row images.
func NewRowCache(maxBytes int64, set *metrics.Set) (*RowCache, error) {
	if maxBytes <= 0 {
		maxBytes = 16 << 20
	}
	c, err := ristretto.NewCache(&ristretto.Config[string, *cachedRow]{
		NumCounters: max(maxBytes/100, 10_000), // about ten counters per expected entry
		MaxCost:     maxBytes,
		BufferItems: 64,
		Metrics:     true, // for Stats (cache-stats)
	})
	if err != nil {
		return nil, fmt.Errorf("create row cache: %w", err)
	}
	if set == nil {
		set = metrics.NewSet()
	}
	rc := &RowCache{c: c, gen: map[uint32]uint64{}, batch: map[string]*cachedRow{},
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
	// Entries and CostBytes are what ristretto holds (approximate).
	Entries   uint64
	CostBytes uint64
	Evicted   uint64
	Rejected  uint64
}

// Stats returns a snapshot; safe for concurrent use.
func (rc *RowCache) Stats() CacheStats {
	s := CacheStats{Hits: rc.hits.Load(), Misses: rc.misses.Load()}
	if s.Hits+s.Misses > 0 {
		s.HitRate = float64(s.Hits) / float64(s.Hits+s.Misses)
	}
	if m := rc.c.Metrics; m != nil {
		s.Entries = m.KeysAdded() - m.KeysEvicted()
		s.CostBytes = m.CostAdded() - m.CostEvicted()
		s.Evicted = m.KeysEvicted()
		s.Rejected = m.SetsRejected() + m.SetsDropped()
	}
	return s
}

// Close releases the cache's goroutines.
func (rc *RowCache) Close() { rc.c.Close() }

// reset forgets every image: the stream went back to an earlier position.
func (rc *RowCache) reset() {
	rc.c.Clear()
	clear(rc.batch)
	rc.mResets.Inc()
}

func (rc *RowCache) key(ev *decoder.Event, k *decoder.Row) string {
	b := make([]byte, 0, 32)
	b = strconv.AppendUint(b, uint64(ev.RelationID), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, rc.gen[ev.RelationID], 10)
	for _, v := range k.Values {
		b = append(b, 0)
		b = append(b, v...)
	}
	return string(b)
}

func (rc *RowCache) get(k string, rel *decoder.Relation) *decoder.Row {
	e, ok := rc.batch[k]
	if !ok {
		e, ok = rc.c.Get(k)
	}
	if !ok || e == nil || e.rel != rel {
		rc.misses.Add(1)
		rc.mMisses.Inc()
		return nil
	}
	rc.hits.Add(1)
	rc.mHits.Inc()
	return e.row
}

// apply uses and updates the cache for one event, in stream order. It returns what the
// cache supplies for the event, and false when it supplies nothing; it does not modify
// the event (the router completes it with filled.complete before dispatching it).
func (rc *RowCache) apply(ev *decoder.Event) (f filled, ok bool) {
	rel := ev.Relation
	switch ev.Op {
	case decoder.OpTruncate:
		rc.gen[ev.RelationID]++
		return f, false
	case decoder.OpInsert, decoder.OpUpdate, decoder.OpDelete:
	default:
		return f, false
	}
	if rel == nil || ev.Key == nil || ev.Key.Len() == 0 {
		return f, false // no key: the row cannot be found again
	}
	newKey := rc.key(ev, ev.Key)
	switch ev.Op {
	case decoder.OpInsert:
		rc.put(newKey, rel, ev.New)
	case decoder.OpUpdate:
		oldKey := newKey
		if ev.OldKind == decoder.OldKey && ev.Old != nil {
			oldKey = rc.key(ev, ev.Old) // the key changed: PostgreSQL sent the old one
		}
		if ev.OldKind == decoder.OldNone || ev.OldKind == decoder.OldKey {
			if img := rc.get(oldKey, rel); img != nil {
				f, ok = fill(ev, img), true
			}
		}
		if oldKey != newKey {
			rc.batch[oldKey] = nil
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
		rc.batch[newKey] = nil
	}
	return f, ok
}

// put records the row's latest image, or forgets the row when the image is incomplete.
func (rc *RowCache) put(k string, rel *decoder.Relation, row *decoder.Row) {
	if row == nil || row.Len() != len(rel.Names) {
		rc.batch[k] = nil
		return
	}
	rc.batch[k] = &cachedRow{rel: rel, row: row}
}

// compact copies a row into one allocation of its own, so that caching it does not
// keep the whole event (its other rows and its JSON) alive; cost is its real size.
func compact(row *decoder.Row) (*decoder.Row, int64) {
	n := 0
	for _, v := range row.Values {
		n += len(v)
	}
	buf := make([]byte, 0, n)
	vals := make([]json.RawMessage, len(row.Values))
	for i, v := range row.Values {
		start := len(buf)
		buf = append(buf, v...)
		vals[i] = buf[start:len(buf):len(buf)]
	}
	return &decoder.Row{Names: row.Names, Values: vals}, int64(n + 24*len(vals) + 96)
}

// endBatch publishes the batch's images to the shared cache and waits until they are
// applied, so the next batch never reads an older image of a row.
func (rc *RowCache) endBatch() {
	if len(rc.batch) == 0 {
		return
	}
	for k, e := range rc.batch {
		if e == nil {
			rc.c.Del(k)
			continue
		}
		var cost int64
		e.row, cost = compact(e.row)
		cost += int64(len(k)) + 48
		// A Set of a key already present is applied at once; a new key may be dropped or
		// rejected by the admission policy, which only means a later miss.
		rc.c.Set(k, e, cost)
	}
	clear(rc.batch)
	rc.c.Wait()
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
