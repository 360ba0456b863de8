package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// errPermanent marks a failure that a new generation would meet again.
var errPermanent = errors.New("permanent")

// Generation serves one set of owned partitions with one pipeline. It is the
// pipeline's Acker and fences its sinks: while its leases are not known to be valid
// (past the local deadline of the last renewal, or the generation ended) a delivery
// waits instead of starting and an ack is not sent. The deadline is measured on the
// monotonic clock from before the renewal was sent, less a margin, so it passes
// before the bucket's TTL can let another executor claim the partition: an
// executor paused (SIGSTOP, a long GC, a frozen VM) longer than its lease finds it
// expired when it resumes. Deleting the ex-owner's consumer fences its acks in
// JetStream as well.
type Generation struct {
	e      *Executor
	id     uint64
	leases *leases
	epochs map[int]uint64 // partition → epoch of the claim served
	pl     *pipeline.Pipeline
	// consumers reads each partition served; set before the goroutines start
	consumers map[int]jetstream.Consumer
	// positions are the partitions' settled positions (nil: no deduplication)
	positions *settledPositions

	fetchCtx    context.Context // cancelled to stop reading
	stopFetch   context.CancelFunc
	runCtx      context.Context // cancelled to stop the pipeline
	stopRun     context.CancelFunc
	fetchers    sync.WaitGroup
	runner      sync.WaitGroup
	failed      chan struct{}
	failOnce    sync.Once
	failErr     error
	stopOnce    sync.Once
	mu          sync.Mutex
	ended       bool
	next        lsn.Ticket
	flights     map[lsn.Ticket]*flight
	inflightSeq map[int]map[uint64]bool // partition → stream sequences in the pipeline
}

type flight struct {
	msg       jetstream.Msg
	partition int
	seq       uint64
	since     time.Time
	settled   lsn.Ticket // in the partition's settled positions (0: none)
}

// startGeneration creates the consumers of the claimed partitions and starts
// reading them into a new pipeline.
func (e *Executor) startGeneration(ctx context.Context, l *leases, epochs map[int]uint64) (*Generation, error) {
	// A generation that failed to start is tried again under the same number, so
	// the consumers it created are taken up rather than deleted and made again.
	id := e.retryGen
	if id == 0 || !sameEpochs(epochs, e.retryEpochs) {
		id = e.gens.Add(1)
	}
	e.retryGen, e.retryEpochs = id, epochs
	g := &Generation{e: e, id: id, leases: l, epochs: epochs, failed: make(chan struct{}),
		next: 1, flights: map[lsn.Ticket]*flight{}, inflightSeq: map[int]map[uint64]bool{}}
	for p := range epochs {
		g.inflightSeq[p] = map[uint64]bool{}
	}
	var st jetstream.Stream
	err := e.retry(ctx, g, func(cctx context.Context) error {
		var err error
		st, err = e.c.js.Stream(cctx, e.c.cfg.Stream)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("look up stream: %w", err)
	}
	consumers, err := e.consumers(ctx, st, g)
	if err != nil {
		return nil, err
	}
	if g.positions, err = e.loadPositions(ctx, g); err != nil {
		return nil, fmt.Errorf("load the settled positions: %w", err)
	}
	pl, err := e.opts.NewPipeline(g)
	if err != nil {
		return nil, fmt.Errorf("build pipeline: %w", err)
	}
	g.pl = pl
	g.consumers = consumers
	e.retryGen, e.retryEpochs = 0, nil
	g.runCtx, g.stopRun = context.WithCancel(ctx)
	g.fetchCtx, g.stopFetch = context.WithCancel(g.runCtx)
	g.runner.Add(3)
	if g.positions != nil {
		g.runner.Add(1)
		go func() {
			defer g.runner.Done()
			g.savePositions()
		}()
	}
	go func() {
		defer g.runner.Done()
		if err := pl.Run(g.runCtx); err != nil {
			e.log.Warn().Err(err).Msg("transport pipeline stopped with an error")
		}
	}()
	go func() {
		defer g.runner.Done()
		g.progress()
	}()
	go func() {
		defer g.runner.Done()
		g.backlog()
	}()
	for p, c := range consumers {
		g.fetchers.Add(1)
		go func() {
			defer g.fetchers.Done()
			g.fetch(p, c)
		}()
	}
	return g, nil
}

// fetch reads partition p in stream order and pushes each event into the pipeline.
func (g *Generation) fetch(p int, c jetstream.Consumer) {
	// Pull requests expire after the transport timeout, with heartbeats at half of
	// it: a pull request parked on a consumer leader that died is noticed within
	// one expiry (ErrNoHeartbeat) and made again, to the new leader.
	it, err := c.Messages(jetstream.PullMaxMessages(256), jetstream.PullExpiry(g.e.pullExpiry()))
	if err != nil {
		g.fail(fmt.Errorf("read partition %d: %w", p, err))
		return
	}
	stop := context.AfterFunc(g.fetchCtx, it.Stop)
	defer stop()
	defer it.Stop()
	// The consumer numbers its deliveries (redeliveries too) 1, 2, 3, ...; one
	// missing was lost in transit (a dropped connection, a NATS node gone) yet
	// counts as delivered: JetStream delivers it again only after ack_wait, behind
	// the messages that follow it. Rather than break the partition's order, the
	// generation fails and the next one reads from the first unacknowledged message.
	delivered := c.CachedInfo().Delivered.Consumer
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrNoHeartbeat) && g.fetchCtx.Err() == nil {
			g.e.m.missedHeartbeats.Inc()
			g.e.log.Debug().Int("partition", p).Msg("transport pull heartbeat missed; pulling again")
			continue // Next pulls again
		}
		if err != nil {
			if g.fetchCtx.Err() == nil {
				g.fail(fmt.Errorf("read partition %d: %w", p, err))
			}
			return
		}
		md, err := msg.Metadata()
		if err != nil {
			g.fail(fmt.Errorf("read partition %d: %w", p, err))
			return
		}
		if md.Sequence.Consumer != delivered+1 {
			g.fail(fmt.Errorf("read partition %d: delivery %d was lost in transit (%d came next)", p, delivered+1, md.Sequence.Consumer))
			return
		}
		delivered = md.Sequence.Consumer
		g.mu.Lock()
		again := g.inflightSeq[p][md.Sequence.Stream]
		g.mu.Unlock()
		if again { // redelivered while the pipeline still holds it
			continue
		}
		ev, err := decoder.ParseEvent(msg.Data())
		if err != nil {
			g.fail(fmt.Errorf("%w: partition %d, stream sequence %d is not an event: %w", errPermanent, p, md.Sequence.Stream, err))
			return
		}
		if g.positions.repeat(p, msg, ev) {
			g.e.m.dedupDropped.Inc()
			if g.valid() {
				if err := msg.Ack(); err != nil {
					g.e.log.Debug().Err(err).Msg("transport ack failed")
				}
			}
			continue
		}
		for g.pl.Full() {
			select {
			case <-g.fetchCtx.Done():
				return
			case <-g.pl.Ready():
			case <-time.After(50 * time.Millisecond):
			}
		}
		g.mu.Lock()
		t := g.next
		g.next++
		g.flights[t] = &flight{msg: msg, partition: p, seq: md.Sequence.Stream, since: time.Now(), settled: g.positions.dispatch(p, msg, ev)}
		g.inflightSeq[p][md.Sequence.Stream] = true
		g.mu.Unlock()
		if h := msg.Headers(); h.Get(ReplayHeader) != "" {
			// Published again by a replay: delivered again, for its observer only.
			g.pl.PushReplayed(h.Get(ReplayObserverHeader), []*decoder.Event{ev}, []lsn.Ticket{t})
		} else if o := h.Get(ObserverHeader); o != "" { // a snapshot's row for one observer
			g.pl.PushTargeted(o, []*decoder.Event{ev}, []lsn.Ticket{t})
		} else {
			g.pl.Push([]*decoder.Event{ev}, []lsn.Ticket{t})
		}
	}
}

// progress tells JetStream that slow events are being worked on, so it does not
// deliver them again after ack_wait.
func (g *Generation) progress() {
	every := g.e.c.cfg.AckWait / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-g.runCtx.Done():
			return
		case <-t.C:
		}
		if !g.valid() {
			continue
		}
		g.mu.Lock()
		var slow []jetstream.Msg
		for _, f := range g.flights {
			if time.Since(f.since) >= every {
				slow = append(slow, f.msg)
			}
		}
		g.mu.Unlock()
		for _, m := range slow {
			m.InProgress()
		}
	}
}

// backlog reads the pending and ack-pending counts of the generation's consumers
// every BacklogInterval for the backlog metrics, until the generation ends; the
// series of its partitions are removed by stop.
func (g *Generation) backlog() {
	t := time.NewTicker(g.e.opts.BacklogInterval)
	defer t.Stop()
	for {
		for p, c := range g.consumers {
			cctx, cancel := g.e.c.timeout(g.runCtx)
			info, err := c.Info(cctx)
			cancel()
			if g.runCtx.Err() != nil {
				return
			}
			if err != nil {
				g.e.m.backlogErrs.Inc()
				g.e.log.Debug().Err(err).Int("partition", p).Msg("transport partition backlog unknown")
				continue
			}
			g.e.m.setBacklog(p, Backlog{Partition: p, Consumer: info.Name, Pending: info.NumPending, AckPending: info.NumAckPending})
		}
		select {
		case <-g.runCtx.Done():
			return
		case <-t.C:
		}
	}
}

// Ack acknowledges the message of ticket t to JetStream once the pipeline settled
// its event, unless the generation is fenced; it implements pipeline.Acker.
func (g *Generation) Ack(t lsn.Ticket) bool {
	g.mu.Lock()
	f := g.flights[t]
	delete(g.flights, t)
	if f != nil {
		delete(g.inflightSeq[f.partition], f.seq)
	}
	g.mu.Unlock()
	if f == nil {
		return false
	}
	g.positions.settled(f.partition, f.settled) // settled, whether or not the ack may go
	if !g.valid() {
		g.e.m.fencedAcks.Inc()
		g.e.log.Warn().Int("partition", f.partition).Uint64("stream_seq", f.seq).Msg("transport ack fenced: the lease lapsed")
		return true
	}
	if err := f.msg.Ack(); err != nil {
		g.e.log.Debug().Err(err).Msg("transport ack failed")
	}
	return true
}

// ID returns the generation's number within its executor (from 1, increasing).
func (g *Generation) ID() uint64 { return g.id }

// Partitions returns the partitions this generation serves, unsorted.
func (g *Generation) Partitions() []int {
	out := make([]int, 0, len(g.epochs))
	for p := range g.epochs {
		out = append(out, p)
	}
	return out
}

// valid reports whether the generation may deliver and ack now.
func (g *Generation) valid() bool {
	g.mu.Lock()
	ended := g.ended
	g.mu.Unlock()
	return !ended && g.leases.valid(g.epochs)
}

func (g *Generation) fail(err error) {
	g.failOnce.Do(func() {
		g.mu.Lock()
		g.failErr = err
		g.mu.Unlock()
		g.e.log.Warn().Err(err).Msg("transport generation failed")
		close(g.failed)
	})
}

func (g *Generation) failedErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failErr
}

// stop stops reading, lets the pipeline settle what it holds until ctx is done or
// lease_ttl passed, then ends the generation (nothing is delivered or
// acked from then on) and waits for its goroutines.
func (g *Generation) stop(ctx context.Context) {
	g.stopOnce.Do(func() {
		g.stopFetch()
		g.fetchers.Wait()
		dctx, cancel := context.WithTimeout(ctx, g.e.c.cfg.LeaseTTL)
		g.pl.Drain(dctx)
		cancel()
		g.mu.Lock()
		g.ended = true
		g.mu.Unlock()
		g.stopRun()
		g.runner.Wait()
		if g.positions != nil {
			g.save(context.WithoutCancel(ctx))
		}
		for p := range g.epochs {
			g.e.m.dropBacklog(p)
		}
	})
}

// Fence wraps an action's sink so that a delivery starts only while the
// generation's leases are valid: otherwise it waits until they are renewed or the
// generation ends (the delivery then fails with the cancellation and its event
// stays unacknowledged, for the next owner). A delivery already under way when the
// process is paused is not recalled: every delivery started after the pause is
// fenced. The wrapper keeps BatchSink and Closer.
func (g *Generation) Fence(s pipeline.Sink) pipeline.Sink {
	f := fenced{g: g, s: s}
	if b, ok := s.(pipeline.BatchSink); ok {
		return fencedBatch{fenced: f, b: b}
	}
	return f
}

type fenced struct {
	g *Generation
	s pipeline.Sink
}

func (f fenced) wait() error {
	if f.g.valid() {
		return nil
	}
	f.g.e.m.fencedDel.Inc()
	// Wait on the generation, not on ctx: a delivery deadline must not turn a
	// fenced wait into a failed attempt (and, after the retries, a dead letter).
	for !f.g.valid() {
		select {
		case <-f.g.runCtx.Done():
			return f.g.runCtx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func (f fenced) Deliver(ctx context.Context, ev *decoder.Event) error {
	if err := f.wait(); err != nil {
		return err
	}
	return f.s.Deliver(ctx, ev)
}

func (f fenced) Close() error {
	if c, ok := f.s.(pipeline.Closer); ok {
		return c.Close()
	}
	return nil
}

type fencedBatch struct {
	fenced
	b pipeline.BatchSink
}

func (f fencedBatch) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	if err := f.wait(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return
	}
	f.b.DeliverBatch(ctx, evs, errs)
}
