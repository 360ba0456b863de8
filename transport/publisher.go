package transport

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/backoff"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// Acker receives the dispatch ticket of each event once JetStream has stored it: the
// replication session's watermark, which then confirms the slot up to it.
type Acker interface {
	Ack(t lsn.Ticket) bool
}

// PublisherOptions configures a Publisher.
type PublisherOptions struct {
	// Acker receives each event's ticket once JetStream acknowledged it (required).
	Acker  Acker
	Logger zerolog.Logger
	// Metrics receives the publisher's metrics (observer_transport_*,
	// docs/metrics.md); nil keeps them in a private set that nothing exports.
	Metrics *metrics.Set
	// BacklogInterval is how often Run reads the stream's message count for
	// observer_transport_stream_messages (default 5s).
	BacklogInterval time.Duration
	// Filler completes each event from the row cache as it is pushed, in commit
	// order, before it is published (nil: events are published as decoded).
	Filler *pipeline.Filler
	// MaxInFlightBytes bounds the bytes of the events pushed and not yet
	// acknowledged by JetStream, as filled (pipeline.max_in_flight_bytes; 0: only
	// max_pending bounds them).
	MaxInFlightBytes int64
	// Observer, when set, returns the observer an event is for alone ("": every
	// observer that matches it), which travels in ObserverHeader. It is called on
	// Run's goroutine.
	Observer func(ev *decoder.Event) string
	// Observed, when set, reports whether an observer can fire for an event (its
	// table and operation, or a message's prefix). An event it returns false for is
	// published to no one: its ticket is acknowledged at once, as the in-process
	// pipeline settles an event no observer matches. nil publishes every event.
	Observed func(ev *decoder.Event) bool
}

// Publisher is the reader side of the transport: it takes the events of the
// replication session (it is a cdc.Consumer: Push, Full, Ready), completes them
// from the row cache (PublisherOptions.Filler) and publishes each to
// <prefix>.<partition> with Nats-Msg-Id set to the event id, asynchronously, with at
// most max_pending events (and MaxInFlightBytes of them) pushed and not yet
// acknowledged by JetStream.
// Each event's ticket goes to the Acker only once JetStream acknowledged it, so the
// slot is never confirmed past an event JetStream does not hold.
//
// Order: every publish but the first after a start or a failure carries
// Nats-Expected-Last-Msg-Id, the previous event's id, so JetStream refuses to store
// an event whose predecessor it did not store; the stream therefore holds the events
// in commit order without gaps, whatever fails. After a failure the publisher
// waits for every outstanding publish, then publishes again from the oldest event
// not acknowledged, one at a time and without the header while JetStream answers
// "duplicate" (it stored them before the failure), pipelined again from the first
// new one.
//
// Push, Full, Ready, Outstanding, InFlightBytes, Acked, Available and Replay are
// safe for concurrent use with Run.
type Publisher struct {
	c    *Client
	opts PublisherOptions
	log  zerolog.Logger

	mu      sync.Mutex
	queue   []entry // pushed, not yet published, in stream order
	count   int     // pushed and not yet acknowledged by JetStream
	bytes   int64   // their Size, as filled
	high    lsn.Position
	hasHigh bool         // high is the highest event id pushed
	held    lsn.LSN      // the stream holds every event committed below it (Replay.Stored)
	replay  *replayRange // the last replay asked for (nil: none)
	lastRep int64        // its number
	inReady chan struct{}
	ready   chan struct{}

	wm        *lsn.Watermark[lsn.Position]
	available atomic.Bool

	m publisherMetrics
}

type entry struct {
	ev     *decoder.Event
	replay *replayRange // set when a replay publishes ev again
	ticket lsn.Ticket   // the session's
	own    lsn.Ticket   // in wm
	size   int64        // ev.Size() as pushed and filled
	sent   time.Time
	fut    jetstream.PubAckFuture
}

// NewPublisher returns a Publisher on c; it starts no goroutine.
func NewPublisher(c *Client, opts PublisherOptions) (*Publisher, error) {
	if opts.Acker == nil {
		return nil, errors.New("transport: Acker is required")
	}
	if opts.BacklogInterval <= 0 {
		opts.BacklogInterval = DefaultBacklogInterval
	}
	p := &Publisher{c: c, opts: opts, log: opts.Logger, inReady: make(chan struct{}, 1), ready: make(chan struct{}, 1),
		wm: lsn.NewWatermark(lsn.Position.Compare)}
	p.m = newPublisherMetrics(opts.Metrics, p)
	return p, nil
}

// Push hands events over with their dispatch tickets (tickets[i] for evs[i]), in
// stream order (the Filler completes them here, from one caller); it never blocks.
// The publisher owns both slices and the events from then on.
//
// An event at or below the highest id pushed before is one the session sends again
// (after a rewind or a reconnect): the publisher has it already, published or
// queued, so its ticket is acknowledged at once and it is not published again —
// unless a Replay covers it, which publishes it again as a new message. So is an
// event below the last Replay's Stored position. Snapshot rows (READ) are always
// published: their ids are below the stream's by design. An event no observer can
// fire for (PublisherOptions.Observed) is not published: its ticket is acknowledged
// at once.
func (p *Publisher) Push(evs []*decoder.Event, tickets []lsn.Ticket) {
	if len(evs) != len(tickets) {
		panic(fmt.Sprintf("transport: Push of %d events with %d tickets", len(evs), len(tickets)))
	}
	for _, ev := range evs {
		p.opts.Filler.Fill(ev) // in commit order: Push is called in stream order
	}
	var again []lsn.Ticket
	p.mu.Lock()
	for i, ev := range evs {
		rr := p.replay
		switch {
		case ev.Op == decoder.OpRead: // a snapshot's row: its id is below the stream's by design
			rr = nil
		case p.opts.Observed != nil && !p.opts.Observed(ev):
			again = append(again, tickets[i])
			continue
		case rr != nil && rr.covers(ev):
		case p.hasHigh && ev.ID.Compare(p.high) <= 0 || ev.ID.Commit < p.held:
			again = append(again, tickets[i])
			continue
		default:
			rr, p.high, p.hasHigh = nil, ev.ID, true
		}
		size := int64(ev.Size())
		p.queue = append(p.queue, entry{ev: ev, replay: rr, ticket: tickets[i], own: p.wm.Dispatch(ev.ID), size: size})
		p.count++
		p.bytes += size
	}
	p.mu.Unlock()
	for _, t := range again {
		p.opts.Acker.Ack(t)
	}
	select {
	case p.inReady <- struct{}{}:
	default:
	}
}

// Full reports whether max_pending events, or MaxInFlightBytes of them, wait for
// JetStream; the replication session stops reading while it does (and goes on
// sending status updates).
func (p *Publisher) Full() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fullLocked()
}

func (p *Publisher) fullLocked() bool {
	return p.count >= p.c.cfg.MaxPending || (p.opts.MaxInFlightBytes > 0 && p.bytes >= p.opts.MaxInFlightBytes)
}

// InFlightBytes returns the bytes of the events pushed and not yet acknowledged by
// JetStream (their Size, as filled from the row cache).
func (p *Publisher) InFlightBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bytes
}

// Ready returns a channel that receives after Full turned false.
func (p *Publisher) Ready() <-chan struct{} { return p.ready }

// Outstanding returns the events pushed and not yet acknowledged by JetStream.
func (p *Publisher) Outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

// Acked returns the highest event id at or below which JetStream has acknowledged
// every event pushed, and false before the first acknowledgement.
func (p *Publisher) Acked() (lsn.Position, bool) { return p.wm.Acked() }

// Available reports whether the last publish succeeded: false while NATS or the
// stream does not answer (the reader is then held back; /readyz says not ready).
func (p *Publisher) Available() bool { return p.available.Load() }

// Run publishes until ctx is cancelled, then returns nil after its last publish
// settled or was abandoned (abandoned events stay unacknowledged: the slot is not
// confirmed past them). It returns an error only for an event JetStream can never
// take (larger than the server's max_payload): the reader must stop there.
func (p *Publisher) Run(ctx context.Context) error {
	pctx, stopPoll := context.WithCancel(ctx)
	var poller sync.WaitGroup
	poller.Add(1)
	go func() { defer poller.Done(); p.pollStream(pctx) }()
	defer poller.Wait()
	defer stopPoll()
	r := &run{p: p, resync: true, guard: time.NewTimer(time.Hour)}
	defer r.guard.Stop()
	for ctx.Err() == nil {
		var err error
		if r.resync {
			err = r.resyncOne(ctx)
		} else {
			err = r.pipelined(ctx)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// run is the state of Run.
type run struct {
	p        *Publisher
	inflight []entry
	last     string // id of the previous event published, for Nats-Expected-Last-Msg-Id
	resync   bool   // publish one at a time, without the header, until a new event is stored
	attempt  int
	guard    *time.Timer
}

// backoff sleeps before the next try after a failure; false when ctx is done.
func (r *run) backoff(ctx context.Context) bool {
	r.attempt++
	return backoff.Sleep(ctx, backoff.Exponential(r.attempt, 100*time.Millisecond, 5*time.Second)) == nil
}

// resyncOne publishes the oldest queued event without Nats-Expected-Last-Msg-Id and
// leaves resync mode once JetStream stores one it did not hold.
func (r *run) resyncOne(ctx context.Context) error {
	p := r.p
	e, ok := p.head()
	if !ok {
		select {
		case <-ctx.Done():
		case <-p.inReady:
		}
		return nil
	}
	dup, err := p.publishSync(ctx, e)
	if err != nil {
		if errors.Is(err, natsio.ErrMaxPayload) {
			return fmt.Errorf("publish event %s: %w", e.ev.ID, err)
		}
		p.fail(err, e)
		r.backoff(ctx)
		return nil
	}
	r.attempt = 0
	p.pop(1)
	p.settle(e)
	if !dup {
		r.last, r.resync = e.msgID(), false
	}
	return nil
}

// pipelined publishes everything queued, each expecting its predecessor, then
// waits for the oldest outstanding PubAck (or new events).
func (r *run) pipelined(ctx context.Context) error {
	p := r.p
	taken := p.take()
	for i, e := range taken {
		f, err := p.c.js.PublishMsgAsync(p.msg(e, r.last))
		if err != nil {
			if errors.Is(err, natsio.ErrMaxPayload) {
				return fmt.Errorf("publish event %s: %w", e.ev.ID, err)
			}
			// Not sent: it and everything after it wait, unsent, for the resync.
			p.fail(err, e)
			r.inflight = append(r.inflight, taken[i:]...)
			break
		}
		e.fut, e.sent = f, time.Now()
		r.inflight = append(r.inflight, e)
		r.last = e.msgID()
	}
	if len(r.inflight) == 0 {
		select {
		case <-ctx.Done():
		case <-p.inReady:
		}
		return nil
	}
	head := r.inflight[0]
	if head.fut == nil { // failed to send: drain the rest, then resync
		r.inflight = p.drain(ctx, r.inflight)
		r.resync = true
		return nil
	}
	r.guard.Reset(4*p.c.cfg.Timeout + time.Second)
	defer func() {
		if !r.guard.Stop() {
			select {
			case <-r.guard.C:
			default:
			}
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case <-p.inReady:
		return nil
	case <-head.fut.Ok():
		r.inflight = r.inflight[1:]
		p.settleTimed(head)
		return nil
	case err := <-head.fut.Err():
		p.fail(err, head)
	case <-r.guard.C:
		p.fail(errors.New("no PubAck and no error from the client"), head)
	}
	r.inflight = p.drain(ctx, r.inflight[1:])
	p.requeue(head)
	r.resync = true
	r.backoff(ctx)
	return nil
}

// drain waits for every outstanding publish after a failure: those JetStream stored
// are settled, the others go back to the queue in order. It returns nil.
func (p *Publisher) drain(ctx context.Context, inflight []entry) []entry {
	var back []entry
	for _, e := range inflight {
		if e.fut == nil {
			back = append(back, e)
			continue
		}
		select {
		case <-e.fut.Ok():
			p.settleTimed(e)
		case <-e.fut.Err():
			back = append(back, e)
		case <-ctx.Done():
			back = append(back, e)
		case <-time.After(4*p.c.cfg.Timeout + time.Second):
			back = append(back, e)
		}
	}
	p.requeue(back...)
	return nil
}

// requeue puts entries back at the front of the queue, in order.
func (p *Publisher) requeue(es ...entry) {
	if len(es) == 0 {
		return
	}
	p.mu.Lock()
	q := make([]entry, 0, len(es)+len(p.queue))
	for _, e := range es {
		q = append(q, entry{ev: e.ev, replay: e.replay, ticket: e.ticket, own: e.own, size: e.size})
	}
	p.queue = append(q, p.queue...)
	p.mu.Unlock()
}

func (p *Publisher) head() (entry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return entry{}, false
	}
	return p.queue[0], true
}

func (p *Publisher) pop(n int) {
	p.mu.Lock()
	p.queue = p.queue[n:]
	p.mu.Unlock()
}

func (p *Publisher) take() []entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queue
	p.queue = nil
	return q
}

// publishSync publishes e without Nats-Expected-Last-Msg-Id and reports whether
// JetStream already held it.
func (p *Publisher) publishSync(ctx context.Context, e entry) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, p.c.cfg.Timeout)
	defer cancel()
	start := time.Now()
	ack, err := p.c.js.PublishMsg(ctx, p.msg(e, ""))
	if err != nil {
		return false, err
	}
	p.m.latency.UpdateDuration(start)
	if ack.Duplicate {
		p.m.duplicates.Inc()
	}
	return ack.Duplicate, nil
}

func (p *Publisher) msg(e entry, last string) *natsio.Msg {
	ev := e.ev
	m := &natsio.Msg{Subject: Subject(p.c.cfg.SubjectPrefix, Partition(ev, p.c.cfg.Partitions)), Data: ev.JSON(), Header: natsio.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, e.msgID())
	m.Header.Set(jetstream.ExpectedStreamHeader, p.c.cfg.Stream)
	if last != "" {
		m.Header.Set(jetstream.ExpectedLastMsgIDHeader, last)
	}
	if rr := e.replay; rr != nil {
		m.Header.Set(ReplayHeader, strconv.FormatInt(rr.n, 10))
		if rr.Observer != "" {
			m.Header.Set(ReplayObserverHeader, rr.Observer)
		}
	} else if p.opts.Observer != nil {
		if o := p.opts.Observer(ev); o != "" {
			m.Header.Set(ObserverHeader, o)
		}
	}
	return m
}

func (p *Publisher) settleTimed(e entry) {
	p.m.latency.UpdateDuration(e.sent)
	p.settle(e)
}

// settle acknowledges a stored event to the Acker.
func (p *Publisher) settle(e entry) {
	p.available.Store(true)
	p.m.published.Inc()
	if e.replay != nil {
		p.m.replayed.Inc()
	}
	p.wm.Ack(e.own)
	p.opts.Acker.Ack(e.ticket)
	p.mu.Lock()
	full := p.fullLocked()
	p.count--
	p.bytes -= e.size
	nowFull := p.fullLocked()
	p.mu.Unlock()
	if full && !nowFull {
		select {
		case p.ready <- struct{}{}:
		default:
		}
	}
}

func (p *Publisher) fail(err error, e entry) {
	if p.available.Swap(false) {
		p.log.Warn().Err(err).Str("event_id", e.ev.ID.String()).Msg("transport publish failed; holding the slot")
	}
	p.m.failures.Inc()
	p.m.resyncs.Inc()
}

// pollStream reads the stream's message count every BacklogInterval until ctx is
// done: on a work-queue stream, the events published and not yet acknowledged by
// an executor, whoever serves their partitions (or nobody).
func (p *Publisher) pollStream(ctx context.Context) {
	t := time.NewTicker(p.opts.BacklogInterval)
	defer t.Stop()
	for {
		cctx, cancel := p.c.timeout(ctx)
		st, err := p.c.js.Stream(cctx, p.c.cfg.Stream)
		cancel()
		switch {
		case err == nil:
			p.m.stream.Set(float64(st.CachedInfo().State.Msgs))
		case ctx.Err() == nil:
			p.m.streamErrs.Inc()
			p.log.Debug().Err(err).Msg("transport stream backlog unknown")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool { return backoff.Sleep(ctx, d) == nil }
