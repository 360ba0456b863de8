package pipeline

import (
	"fmt"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Dedup remembers recently settled (action, event id) pairs, so that events the
// stream sends again within one process lifetime (after a reconnect) are not delivered
// twice. It is a cache: a pair it has forgotten is delivered again, never lost.
// Dedup is safe for concurrent use.
type Dedup struct {
	c *ristretto.Cache[string, struct{}]
}

// NewDedup returns a cache holding about entries pairs.
func NewDedup(entries int64) (*Dedup, error) {
	if entries <= 0 {
		entries = 100_000
	}
	c, err := ristretto.NewCache(&ristretto.Config[string, struct{}]{
		NumCounters: entries * 10,
		MaxCost:     entries,
		BufferItems: 64,
		Metrics:     true, // for Len (cache-stats)
	})
	if err != nil {
		return nil, fmt.Errorf("create dedup cache: %w", err)
	}
	return &Dedup{c: c}, nil
}

func dedupKey(action string, id lsn.Position) string {
	b := make([]byte, 0, len(action)+28)
	b = append(b, action...)
	b = append(b, 0)
	return string(id.AppendText(b))
}

// Seen reports whether the pair was recorded.
func (d *Dedup) Seen(action string, id lsn.Position) bool {
	_, ok := d.c.Get(dedupKey(action, id))
	return ok
}

// Add records the pair.
func (d *Dedup) Add(action string, id lsn.Position) {
	d.c.Set(dedupKey(action, id), struct{}{}, 1)
}

// Wait blocks until recorded pairs are visible to Seen (ristretto applies writes
// asynchronously); for tests and orderly shutdown.
func (d *Dedup) Wait() { d.c.Wait() }

// Len returns about how many pairs the cache holds.
func (d *Dedup) Len() uint64 {
	m := d.c.Metrics
	if m == nil {
		return 0
	}
	return m.KeysAdded() - m.KeysEvicted()
}

// Close releases the cache's goroutines.
func (d *Dedup) Close() { d.c.Close() }
