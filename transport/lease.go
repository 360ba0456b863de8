package transport

import (
	"context"
	"errors"
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

// run writes the executor's heartbeat and renews every claim, at once and then
// every TTL/3, until ctx is done. The heartbeat is written here rather than with
// the claims, so that a generation that takes long to start (consumers created
// while NATS elects new leaders) does not make the executor look dead to the
// others.
func (l *leases) run(ctx context.Context) {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		var hb sync.WaitGroup
		hb.Add(1)
		go func() { defer hb.Done(); l.heartbeat(ctx) }() // never delays a renewal
		l.renew(ctx)
		hb.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat writes members.<id>, which the bucket's TTL removes once the
// executor stops writing it.
func (l *leases) heartbeat(ctx context.Context) {
	cctx, cancel := l.e.c.timeout(ctx)
	defer cancel()
	if _, err := l.kv.Put(cctx, membersPrefix+l.e.id, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil && ctx.Err() == nil {
		l.e.log.Warn().Err(err).Msg("transport heartbeat failed")
	}
}

// renewal is the outcome of one claim's renewal.
type renewal struct {
	p     int
	epoch uint64
	rev   uint64
	sent  time.Time
	err   error
	lost  bool
}

// renew renews every claim, all at once, each with its own call and timeout. A
// claim is given up only when the bucket says another holds it (or nobody): a
// renewal that timed out or found NATS away is tried again at the next tick, and
// meanwhile the lease's deadline fences the generation. A renewal whose answer was
// lost but which the bucket stored shows as a revision mismatch with our own id as
// value: only this executor writes its id, so the claim goes on at the stored
// revision.
func (l *leases) renew(ctx context.Context) {
	l.ops.Lock()
	defer l.ops.Unlock()
	l.mu.Lock()
	held := make(map[int]claim, len(l.claims))
	for p, cl := range l.claims {
		held[p] = *cl
	}
	l.mu.Unlock()
	results := make(chan renewal, len(held))
	for p, cl := range held {
		go func() { results <- l.renewOne(ctx, p, cl) }()
	}
	for range held {
		r := <-results
		if ctx.Err() != nil {
			continue
		}
		l.mu.Lock()
		c := l.claims[r.p]
		switch {
		case c == nil || c.epoch != r.epoch: // released meanwhile
		case r.lost:
			l.e.log.Warn().Err(r.err).Int("partition", r.p).Msg("transport partition lost")
			l.e.m.lost.Inc()
			delete(l.claims, r.p)
			select {
			case l.lost <- struct{}{}:
			default:
			}
		case r.err == nil:
			c.rev, c.until = r.rev, l.until(r.sent)
		case r.rev != 0: // stored before: the deadline stays that of the last known renewal
			c.rev = r.rev
		default:
			l.e.log.Warn().Err(r.err).Int("partition", r.p).Msg("transport lease renewal failed; retrying")
		}
		l.mu.Unlock()
	}
}

func (l *leases) renewOne(ctx context.Context, p int, cl claim) renewal {
	cctx, cancel := l.e.c.timeout(ctx)
	defer cancel()
	r := renewal{p: p, epoch: cl.epoch, sent: time.Now()}
	r.rev, r.err = l.kv.Update(cctx, ownerKey(p), []byte(l.e.id), cl.rev)
	if errors.Is(r.err, jetstream.ErrKeyRevisionMismatch) {
		var ours, known bool
		r.rev, ours, known = l.stillOurs(cctx, p)
		r.lost = known && !ours
	}
	return r
}

// stillOurs reads partition p's owner key after a compare-and-set failed. It
// returns the key's revision and ours when the key still names this executor: the
// failed write (or an earlier one whose answer was lost) was stored. It returns
// known false when the key could not be read.
func (l *leases) stillOurs(ctx context.Context, p int) (rev uint64, ours, known bool) {
	e, err := l.kv.Get(ctx, ownerKey(p))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, false, true
	case err != nil:
		l.e.log.Debug().Err(err).Int("partition", p).Msg("transport owner unknown")
		return 0, false, false
	case string(e.Value()) != l.e.id:
		return 0, false, true
	}
	return e.Revision(), true, true
}

// claim tries to take partition p; it fails while another executor holds it. A
// key that already names this executor (its Create was stored but the answer lost)
// is taken over at its revision, with a lapsed deadline until the next renewal.
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
	until := l.until(sent)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return false
		}
		var ours bool
		if rev, ours, _ = l.stillOurs(cctx, p); !ours {
			return false
		}
		until = time.Time{}
	}
	l.mu.Lock()
	l.claims[p] = &claim{epoch: rev, rev: rev, until: until}
	l.mu.Unlock()
	l.e.m.claimed.Inc()
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
	l.e.m.released.Inc()
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

// claimed reports whether every partition in epochs is still claimed under that
// epoch, whatever its deadline.
func (l *leases) claimed(epochs map[int]uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, ep := range epochs {
		if cl := l.claims[p]; cl == nil || cl.epoch != ep {
			return false
		}
	}
	return true
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
