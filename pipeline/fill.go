package pipeline

import (
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// FillerOptions configures a Filler.
type FillerOptions struct {
	// RowCache keeps the images (required).
	RowCache *RowCache
	// Observers decide which tables need images: those with an observer firing on
	// their UPDATEs or DELETEs. Only their Schema, Table and Ops are read.
	Observers []*Observer
	// MaxEventBytes is source.max_event_bytes: an event the cache's images would
	// make larger keeps the shape PostgreSQL sent (0: no bound).
	MaxEventBytes int
	Logger        zerolog.Logger
}

// Filler completes change events from a RowCache as they pass in stream order: the
// old image of an UPDATE or DELETE PostgreSQL sent only the key of (old_kind
// "cached"), the unchanged TOAST columns it did not send, and the changed columns.
// It is the router's first step in an in-process pipeline, and the reader's before
// it publishes to the nats transport: the reader alone sees every event in commit
// order, so executors receive complete events whichever executor served a row before.
//
// The cache sees TRUNCATEs and the row changes of tables that need images (an
// observer fires on their UPDATEs or DELETEs, and the replica identity is not FULL,
// with which PostgreSQL sends the whole old row); other tables cost it nothing. A
// position at or below the last one it saw (the stream went back) resets the cache.
// Snapshot rows (READ) are not stream positions and pass untouched.
//
// A Filler is not safe for concurrent use: one goroutine calls Fill, in stream order.
type Filler struct {
	rc            *RowCache
	ix            *index
	maxEventBytes int
	log           zerolog.Logger

	pos lsn.Position // id of the last event the cache saw
	// rels says, per relation, whether the cache keeps its rows.
	rels map[*decoder.Relation]bool
}

// NewFiller returns a Filler; it returns nil when opts.RowCache is nil (caching
// disabled), and Fill of a nil Filler does nothing.
func NewFiller(opts FillerOptions) *Filler {
	if opts.RowCache == nil {
		return nil
	}
	return &Filler{rc: opts.RowCache, ix: newIndex(opts.Observers), maxEventBytes: opts.MaxEventBytes, log: opts.Logger}
}

// Fill completes ev, which no other goroutine sees yet, from the cache and updates
// the cache with it. It returns how many bytes ev.Size() grew by (the images are
// the event's own copies, to be counted in flight); 0 when nothing was filled.
func (f *Filler) Fill(ev *decoder.Event) int64 {
	if f == nil || ev.Op == decoder.OpRead || !f.cached(ev) {
		return 0
	}
	if f.pos != (lsn.Position{}) && ev.ID.Compare(f.pos) <= 0 {
		f.rc.reset() // a replay: the cache holds images from later in the stream
	}
	f.pos = ev.ID
	fl, ok := f.rc.apply(ev)
	if !ok {
		return 0
	}
	if n := fl.valueBytes(ev); f.maxEventBytes > 0 && n > f.maxEventBytes {
		// The limit applies to the event as delivered: without the cached images
		// it stays as PostgreSQL sent it.
		f.log.Warn().Str("event_id", ev.ID.String()).Str("table", ev.Schema+"."+ev.Table).
			Int("size", n).Int("max_event_bytes", f.maxEventBytes).
			Msg("the row cache's images would make the event larger than source.max_event_bytes: delivered without them")
		return 0
	}
	before := ev.Size()
	fl.complete(ev)
	return max(int64(ev.Size()-before), 0)
}

// cached reports whether the row cache sees the event (see Filler).
func (f *Filler) cached(ev *decoder.Event) bool {
	rel := ev.Relation
	if ev.Op == decoder.OpTruncate || rel == nil {
		return ev.Op == decoder.OpTruncate
	}
	need, ok := f.rels[rel]
	if !ok {
		need = rel.ReplicaIdentity != decoder.IdentityFull && f.ix.needsImages(ev.Schema, ev.Table)
		if f.rels == nil || len(f.rels) > 4096 {
			f.rels = map[*decoder.Relation]bool{} // relations replaced by newer ones
		}
		f.rels[rel] = need
	}
	return need
}
