package pipeline

import (
	"context"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/backoff"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// entry is one event waiting in a key queue of an action.
type entry struct {
	it       *item
	ticket   lsn.Ticket
	attempts int
	first    time.Time
	lastErr  error
	parking  bool      // failed for good; the DLQ write is pending
	fail     error     // failed before delivery (its condition); on_failure applies at once
	late     *lateCond // the observer's condition, still to be evaluated by the worker
	dlqTries int
	dbg      debugRef // the action's state in the event's debug record
}

// keyQueue holds the events of one row (table + key) for one action, in commit order.
// Only its head is ever being delivered, so a failing event holds back its own row only.
type keyQueue struct {
	key       string
	entries   []*entry
	scheduled bool // in the ready list, being delivered, or waiting for a retry
	// settled is the highest event id settled from this queue: a replayed copy queued
	// behind its original is recognised even before the dedup cache has applied the
	// original's entry (ristretto applies writes asynchronously).
	settled lsn.Position
}

// runner delivers the events of one action with a pool of workers.
type runner struct {
	p     *Pipeline
	a     *Action
	batch BatchSink
	wm    *lsn.Watermark[lsn.Position]
	m     *actionMetrics
	dd    *actionDedup // nil: deduplication off
	// keyBuf is the router's scratch buffer for partition keys.
	keyBuf []byte

	mu   sync.Mutex
	keys map[string]*keyQueue
	// ready holds the keys waiting for a worker from readyHead on, in order: take
	// advances readyHead rather than moving the rest of the list, which a busy
	// action with thousands of ready keys would do for every delivery.
	ready     []*keyQueue
	readyHead int
	timers    map[*keyQueue]*time.Timer
	closed    bool
	wake      chan struct{}
	// unkicked is how many keys enqueue made ready without waking a worker (see kick).
	unkicked int
	replay   replayRangeOf // events to deliver again (nil: none)
	// resumeFrom is the checkpoint the action resumed from (hasStart false: none).
	resumeFrom lsn.Position
	hasStart   bool
}

func newRunner(p *Pipeline, a *Action, set *metrics.Set) *runner {
	if a.Concurrency < 1 || a.Ordered {
		a.Concurrency = 1
	}
	if a.BatchSize < 1 {
		a.BatchSize = 1
	}
	r := &runner{
		p:      p,
		a:      a,
		wm:     lsn.NewWatermark(lsn.ComparePositions),
		keys:   map[string]*keyQueue{},
		timers: map[*keyQueue]*time.Timer{},
		wake:   make(chan struct{}, a.Concurrency),
		m:      newActionMetrics(set, a),
	}
	if p.opts.Dedup != nil {
		r.dd = p.opts.Dedup.action(a.ID)
	}
	if bs, ok := a.Sink.(BatchSink); ok && a.BatchSize > 1 {
		r.batch = bs
	} else {
		a.BatchSize = 1
	}
	return r
}

// skip reports whether the action already settled this event: at or below its
// checkpoint, or replayed after a reconnect (the LSN-ordering dedup layer). Snapshot
// rows (READ) are never skipped by position: their ids name the chunk that read them,
// not a place in the stream, and a chunk read again after a restart keeps its ids.
func (r *runner) skip(ev *decoder.Event) bool {
	if r.replaying(ev) || ev.Op == decoder.OpRead {
		return false
	}
	if r.p.opts.Dedup == nil { // deduplication off: only the loaded checkpoint counts
		if r.hasStart && ev.ID.Compare(r.resumeFrom) <= 0 {
			r.m.dedupCheckpoint.Inc()
			return true
		}
		return false
	}
	if pos, ok := r.wm.Acked(); ok && ev.ID.Compare(pos) <= 0 {
		r.m.dedupCheckpoint.Inc()
		return true
	}
	return false
}

// partitionKey appends to b the key whose events must be delivered in order: the
// table and the row's replica identity key; events without a key are ordered per table
// (or per message prefix).
func (r *runner) partitionKey(b []byte, ev *decoder.Event) []byte {
	if r.a.Ordered {
		return b
	}
	switch {
	case ev.Op == decoder.OpMessage && ev.Message != nil:
		b = append(b, "\x00msg\x00"...)
		return append(b, ev.Message.Prefix...)
	case ev.Key != nil && ev.Key.Len() > 0:
		b = append(b, ev.Schema...)
		b = append(b, '.')
		b = append(b, ev.Table...)
		b = append(b, 0)
		for _, v := range ev.Key.Values {
			b = append(b, v...)
			b = append(b, 0)
		}
		return b
	}
	b = append(b, ev.Schema...)
	b = append(b, '.')
	return append(b, ev.Table...)
}

// enqueue appends the item to its key queue. Called by the router in stream order.
// A non-nil fail makes the event fail for good without a delivery.
func (r *runner) enqueue(it *item, dbg debugRef, fail error, late *lateCond) {
	r.keyBuf = r.partitionKey(r.keyBuf[:0], it.ev)
	r.mu.Lock()
	kq := r.keys[string(r.keyBuf)] // no allocation for the lookup
	if kq == nil {
		kq = &keyQueue{key: string(r.keyBuf)}
		r.keys[kq.key] = kq
	}
	kq.entries = append(kq.entries, &entry{it: it, ticket: r.wm.Dispatch(it.ev.ID), dbg: dbg, fail: fail, late: late})
	if !kq.scheduled {
		kq.scheduled = true
		r.ready = append(r.ready, kq) // the workers are woken by kick, once per routed batch
		r.unkicked++
	}
	r.mu.Unlock()
}

// kick wakes workers for the keys enqueue made ready since the last kick: one worker
// per batch_size of them (a worker takes up to batch_size keys at a time), at most
// every worker. The router calls it after each batch it routed, so that a batch of
// events reaches the sink in a few large deliveries (one write, one fsync) rather than
// one small delivery per worker woken by each event.
func (r *runner) kick() {
	r.mu.Lock()
	n := r.unkicked
	r.unkicked = 0
	r.mu.Unlock()
	for w := min((n+r.a.BatchSize-1)/r.a.BatchSize, r.a.Concurrency); w > 0; w-- {
		select {
		case r.wake <- struct{}{}:
		default:
			return // every worker has a wake-up pending
		}
	}
}

func (r *runner) pushReadyLocked(kq *keyQueue) {
	r.ready = append(r.ready, kq)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// job is a ready key and its head entry, captured under the runner's lock.
type job struct {
	kq *keyQueue
	e  *entry
}

// take waits for ready keys and removes up to n of them from the ready list.
func (r *runner) take(ctx context.Context, dst []job, n int) []job {
	for {
		r.mu.Lock()
		if waiting := r.ready[r.readyHead:]; len(waiting) > 0 {
			k := min(n, len(waiting))
			for _, kq := range waiting[:k] {
				dst = append(dst, job{kq: kq, e: kq.entries[0]})
			}
			clear(waiting[:k]) // the list no longer holds them
			r.readyHead += k
			switch {
			case r.readyHead == len(r.ready):
				r.ready, r.readyHead = r.ready[:0], 0
			case r.readyHead >= 1024 && r.readyHead*2 >= len(r.ready):
				// Half the list is taken: move the rest down, once for every
				// readyHead keys taken rather than at every take.
				left := copy(r.ready, r.ready[r.readyHead:])
				clear(r.ready[left:])
				r.ready, r.readyHead = r.ready[:left], 0
			}
			r.mu.Unlock()
			return dst
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		}
	}
}

func (r *runner) start(ctx context.Context, wg *sync.WaitGroup) {
	for i := 0; i < r.a.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.work(ctx)
		}()
	}
}

// stop cancels pending retry timers; called after the workers exited.
func (r *runner) stop() {
	r.mu.Lock()
	r.closed = true
	for kq, t := range r.timers {
		t.Stop()
		delete(r.timers, kq)
	}
	r.mu.Unlock()
}

func (r *runner) work(ctx context.Context) {
	evs := make([]*decoder.Event, 0, r.a.BatchSize)
	errs := make([]error, 0, r.a.BatchSize)
	var jobs, send []job
	for {
		jobs = r.take(ctx, jobs[:0], r.a.BatchSize)
		if jobs == nil {
			return
		}
		evs, send = evs[:0], send[:0]
		for _, j := range jobs {
			kq, e := j.kq, j.e
			if e.parking {
				r.park(ctx, kq, e)
				continue
			}
			if r.dd != nil && !e.it.replayed && !r.replaying(e.it.ev) && (r.settledInQueue(kq, e) || r.dd.seen(e.it.ev.ID, e.it.ev.Op == decoder.OpRead)) {
				r.m.dedupCache.Inc()
				r.p.debug.setAction(e.dbg, statusDuplicate, e.attempts, nil, 0)
				r.settle(kq, e)
				continue
			}
			if e.late != nil && !r.decide(kq, e) {
				continue // the condition did not hold: settled without a delivery
			}
			if e.attempts == 0 {
				e.first = time.Now()
			}
			if e.fail != nil {
				r.m.failed.Inc()
				e.lastErr = e.fail
				r.failed(ctx, kq, e)
				continue
			}
			evs = append(evs, e.it.ev)
			send = append(send, j)
		}
		if len(evs) == 0 {
			continue
		}
		errs = errs[:len(evs)]
		start := time.Now()
		if len(evs) > 1 {
			clear(errs)
			r.batch.DeliverBatch(ctx, evs, errs)
		} else {
			errs[0] = r.a.Sink.Deliver(ctx, evs[0])
		}
		elapsed := time.Since(start).Seconds()
		for i, j := range send {
			r.m.duration.Update(elapsed)
			r.outcome(ctx, j.kq, j.e, errs[i])
		}
	}
}

// outcome applies the result of one delivery attempt to the head entry of kq.
func (r *runner) outcome(ctx context.Context, kq *keyQueue, e *entry, err error) {
	e.attempts++
	if err == nil {
		r.m.executed.Inc()
		r.m.latency.UpdateDuration(e.it.start) // match to delivery, retries included
		r.remember(e)
		r.p.debug.setAction(e.dbg, statusDelivered, e.attempts, nil, time.Since(e.first))
		r.settle(kq, e)
		return
	}
	if ctx.Err() != nil {
		// Shutting down: the event stays unsettled and is delivered after a restart.
		return
	}
	r.m.failed.Inc()
	e.lastErr = err
	if Retryable(err) && e.attempts < r.a.Retry.Attempts() {
		r.m.retries.Inc()
		d := max(r.a.Retry.Delay(e.attempts), RetryAfter(err))
		r.p.log.Debug().Str("action", r.a.ID).Str("event_id", e.it.ev.ID.String()).
			Int("attempt", e.attempts).Dur("retry_in", d).Str("error", RedactError(err)).Msg("delivery failed, will retry")
		r.p.debug.setAction(e.dbg, statusRetrying, e.attempts, err, 0)
		r.retryLater(kq, d)
		return
	}
	r.failed(ctx, kq, e)
}

// failed applies the action's on_failure policy to the head entry of kq, which
// failed for good with e.lastErr.
func (r *runner) failed(ctx context.Context, kq *keyQueue, e *entry) {
	err := e.lastErr
	switch {
	case r.a.OnFailure == FailureDLQ && r.p.opts.DLQ != nil:
		e.parking = true
		r.park(ctx, kq, e)
	default:
		ev := r.p.log.Error()
		if r.a.OnFailure == FailureAlert {
			ev = ev.Bool("alert", true)
			r.m.alerts.Inc()
		}
		ev.Str("action", r.a.ID).Str("event_id", e.it.ev.ID.String()).Str("table", e.it.ev.Schema+"."+e.it.ev.Table).
			Int("attempts", e.attempts).Str("error", RedactError(err)).Msg("action failed for good; event dropped by on_failure policy")
		r.remember(e)
		r.p.debug.setAction(e.dbg, statusDropped, e.attempts, err, time.Since(e.first))
		r.settle(kq, e)
	}
}

// park writes the head entry to the DLQ; only a stored letter settles the event.
// A failed write is retried with backoff and holds the key (and the watermark).
func (r *runner) park(ctx context.Context, kq *keyQueue, e *entry) {
	dl := DeadLetter{
		Event: e.it.ev, Observer: r.a.observer.Name, Action: r.a.ID, ActionType: r.a.Type,
		Err: e.lastErr, Attempts: e.attempts, FirstTry: e.first, LastTry: time.Now(),
	}
	if err := r.p.opts.DLQ.Put(ctx, dl); err != nil {
		if ctx.Err() != nil {
			return
		}
		e.dlqTries++
		r.m.dlqWriteErrors.Inc()
		d := backoff.Exponential(e.dlqTries, 200*time.Millisecond, 30*time.Second)
		r.p.log.Error().Str("action", r.a.ID).Str("event_id", e.it.ev.ID.String()).Dur("retry_in", d).Str("error", RedactError(err)).
			Msg("dead-letter write failed; holding the event")
		r.retryLater(kq, d)
		return
	}
	r.m.dlq.Inc()
	r.remember(e)
	r.p.debug.setAction(e.dbg, statusDLQ, e.attempts, e.lastErr, time.Since(e.first))
	r.settle(kq, e)
}

// remember records in the dedup state that the action settled e's event.
func (r *runner) remember(e *entry) {
	if r.dd != nil {
		r.dd.add(e.it.ev.ID, e.it.ev.Op == decoder.OpRead, r.wm.Acked)
	}
}

// retryLater makes kq ready again after d.
func (r *runner) retryLater(kq *keyQueue, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.timers[kq] = time.AfterFunc(d, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.timers, kq)
		if !r.closed {
			r.pushReadyLocked(kq)
		}
	})
}

// settledInQueue reports whether an event at or after e's id was settled from kq: e is
// a replayed copy (events of one key are settled in stream order).
func (r *runner) settledInQueue(kq *keyQueue, e *entry) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return kq.settled != (lsn.Position{}) && e.it.ev.ID.Compare(kq.settled) <= 0
}

// settle finishes the head entry of kq for this action and schedules the next one.
func (r *runner) settle(kq *keyQueue, e *entry) {
	if !r.wm.Ack(e.ticket) {
		r.p.log.Error().Str("action", r.a.ID).Str("event_id", e.it.ev.ID.String()).Msg("settled an event twice")
	}
	r.p.done(e.it)
	r.mu.Lock()
	if e.it.ev.ID.Compare(kq.settled) > 0 {
		kq.settled = e.it.ev.ID
	}
	kq.entries[0] = nil
	kq.entries = kq.entries[1:]
	if len(kq.entries) > 0 {
		r.pushReadyLocked(kq)
	} else {
		kq.scheduled = false
		kq.entries = nil
		delete(r.keys, kq.key)
	}
	r.mu.Unlock()
}
