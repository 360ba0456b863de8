package transport

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// leases holds the partitions an executor claimed and renews them on their own
// goroutine, so that starting or stopping a generation (consumer changes, draining
// the pipeline) never delays a renewal. It is safe for concurrent use.
type leases struct {
	e   *Executor
	kv  jetstream.KeyValue
	ttl time.Duration

	ops    sync.Mutex // serializes the bucket calls, so a renewal and a release never race
	mu     sync.Mutex // guards claims; never held across a call to NATS
	claims map[int]*claim
	lost   chan struct{} // receives when a renewal failed
}

func newLeases(e *Executor, kv jetstream.KeyValue) *leases {
	return &leases{e: e, kv: kv, ttl: e.c.cfg.LeaseTTL, claims: map[int]*claim{}, lost: make(chan struct{}, 1)}
}

// until is how long a lease renewed (or created) at sent is known to be ours: the
// bucket can expire the key no earlier than TTL after the server stored the write,
// which is after sent; a fifth of the TTL is kept as margin.
func (l *leases) until(sent time.Time) time.Time { return sent.Add(l.ttl - l.ttl/5) }

// run renews every claim each TTL/3 until ctx is done.
func (l *leases) run(ctx context.Context) {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.renew(ctx)
	}
}

func (l *leases) renew(ctx context.Context) {
	l.ops.Lock()
	defer l.ops.Unlock()
	cctx, cancel := l.e.c.timeout(ctx)
	defer cancel()
	l.mu.Lock()
	held := make(map[int]claim, len(l.claims))
	for p, cl := range l.claims {
		held[p] = *cl
	}
	l.mu.Unlock()
	for p, cl := range held {
		sent := time.Now()
		rev, err := l.kv.Update(cctx, ownerKey(p), []byte(l.e.id), cl.rev)
		l.mu.Lock()
		if err != nil {
			if ctx.Err() == nil {
				l.e.log.Warn().Err(err).Int("partition", p).Msg("transport partition lost")
				delete(l.claims, p)
				select {
				case l.lost <- struct{}{}:
				default:
				}
			}
		} else if c := l.claims[p]; c != nil {
			c.rev, c.until = rev, l.until(sent)
		}
		l.mu.Unlock()
	}
}

// claim tries to take partition p; it fails while another executor holds it.
func (l *leases) claim(ctx context.Context, p int) bool {
	l.ops.Lock()
	defer l.ops.Unlock()
	l.mu.Lock()
	had := l.claims[p] != nil
	l.mu.Unlock()
	if had {
		return true
	}
	cctx, cancel := l.e.c.timeout(ctx)
	defer cancel()
	sent := time.Now()
	rev, err := l.kv.Create(cctx, ownerKey(p), []byte(l.e.id))
	if err != nil {
		return false
	}
	l.mu.Lock()
	l.claims[p] = &claim{epoch: rev, rev: rev, until: l.until(sent)}
	l.mu.Unlock()
	return true
}

// release gives partition p up (a compare-and-set delete at the revision held).
func (l *leases) release(ctx context.Context, p int) {
	l.ops.Lock()
	defer l.ops.Unlock()
	l.mu.Lock()
	cl := l.claims[p]
	delete(l.claims, p)
	l.mu.Unlock()
	if cl == nil {
		return
	}
	cctx, cancel := l.e.c.timeout(ctx)
	defer cancel()
	if err := l.kv.Delete(cctx, ownerKey(p), jetstream.LastRevision(cl.rev)); err != nil {
		l.e.log.Debug().Err(err).Int("partition", p).Msg("transport release failed")
	}
}

// held returns the claimed partitions, sorted, with their epochs.
func (l *leases) held() ([]int, map[int]uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ps := make([]int, 0, len(l.claims))
	epochs := map[int]uint64{}
	for p, cl := range l.claims {
		ps = append(ps, p)
		epochs[p] = cl.epoch
	}
	sort.Ints(ps)
	return ps, epochs
}

// valid reports whether every partition in epochs is still held under that epoch
// and its lease known to be ours now.
func (l *leases) valid(epochs map[int]uint64) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, ep := range epochs {
		cl := l.claims[p]
		if cl == nil || cl.epoch != ep || !now.Before(cl.until) {
			return false
		}
	}
	return true
}
