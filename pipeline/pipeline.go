// Package pipeline is the stage graph between the replication session and the sinks:
// it matches events against observers, partitions them by row for each action,
// delivers them with retries, parks failures in the dead-letter queue and acknowledges
// each event once every matching action has settled it.
//
//	cdc ──Push──▶ inbox ──▶ router (match, conditions) ──▶ per-action key queues ──▶ workers ──▶ Sink
//	                                                                                  │
//	Acker ◀── ack (all actions settled) ◀──────────────────────────────────────────────┘
//
// Memory is bounded by the bytes of events in flight: Full reports when the budget is
// used up, and the session stops reading until Ready fires.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Options configures a Pipeline. Zero values mean the documented defaults.
type Options struct {
	Observers []*Observer
	// Acker receives each event's ticket once it is settled (required).
	Acker Acker
	// DLQ stores events whose actions failed for good; nil means no DLQ (an action
	// with FailureDLQ then logs the failure instead — configuration prevents this).
	DLQ DLQ
	// Dedup remembers recently settled (action, event id) pairs; nil disables it.
	// Without it, events the stream sends again after a reconnect are delivered again
	// (only events at or below the Start checkpoints are skipped).
	Dedup *Dedup
	// RowCache supplies old images and unchanged TOAST values from rows seen
	// before; nil disables it.
	RowCache *RowCache
	// Start holds per-action checkpoints: events at or below them are skipped.
	Start map[string]lsn.Position
	// DebugHistory is how many recent events RecentEvents remembers (default 256).
	DebugHistory int
	// ListenerID labels the stage metrics (observer_events_processed_total{listener_id}).
	ListenerID string
	// MaxInFlightBytes bounds the memory of events between Push and settlement
	// (default 16 MiB).
	MaxInFlightBytes int64
	// MaxEventBytes is source.max_event_bytes: the row cache does not fill an event
	// beyond it (0: no bound).
	MaxEventBytes int
	Logger        zerolog.Logger
	// Metrics receives the pipeline's metrics; nil uses a private set.
	Metrics *metrics.Set
}

// Pipeline routes events to actions. Push, Full and Ready are safe for concurrent use
// with Run.
type Pipeline struct {
	opts    Options
	log     zerolog.Logger
	ix      *index
	runners []*runner
	byID    map[string]*runner
	m       *pipelineMetrics
	debug   *debugRing

	inMu      sync.Mutex
	inbox     []pushed
	routedMax lsn.Position // highest event id pushed (guarded by inMu)
	inReady   chan struct{}

	inflight atomic.Int64
	ready    chan struct{}
	settled  chan struct{} // signalled whenever in-flight bytes drop to zero

	evalSince atomic.Int64 // unix nanoseconds since the router evaluates a condition; 0: not evaluating

	lastID lsn.Position // router only: highest event id routed
	fill   *Filler      // router only: nil without a row cache

	targets   sync.Map // *decoder.Relation → *Observer: snapshot rows for one observer (Target)
	evTargets sync.Map // *decoder.Event → *Observer: the same, per event (PushTargeted)

	// The router's scratch for one event's debug record and targets (router only).
	verdicts []debugVerdict
	states   []debugState
	routeTo  []routeTarget
}

// pushed is one batch handed over by Push: events and their dispatch tickets.
type pushed struct {
	evs     []*decoder.Event
	tickets []lsn.Ticket
	replay  *replayPush // PushReplayed's; nil for Push
}

// item is an event in flight with the number of actions that still have to settle it.
type item struct {
	ev      *decoder.Event
	ticket  lsn.Ticket // acknowledged to the Acker once every action settled the event
	size    int64
	start   time.Time
	pending atomic.Int32
	// replayed: pushed by PushReplayed, delivered again whatever was settled before.
	replayed bool
}

// New checks the observers and returns a Pipeline; it starts no goroutine.
func New(opts Options) (*Pipeline, error) {
	if opts.Acker == nil {
		return nil, errors.New("pipeline: Acker is required")
	}
	if opts.MaxInFlightBytes <= 0 {
		opts.MaxInFlightBytes = 16 << 20
	}
	set := opts.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	p := &Pipeline{
		opts:    opts,
		log:     opts.Logger,
		ix:      newIndex(opts.Observers),
		byID:    map[string]*runner{},
		inReady: make(chan struct{}, 1),
		ready:   make(chan struct{}, 1),
		settled: make(chan struct{}, 1),
		debug:   newDebugRing(opts.DebugHistory),
	}
	p.fill = NewFiller(FillerOptions{RowCache: opts.RowCache, Observers: opts.Observers, MaxEventBytes: opts.MaxEventBytes, Logger: opts.Logger})
	p.m = newPipelineMetrics(set, p)
	for _, o := range opts.Observers {
		if len(o.Actions) == 0 {
			return nil, fmt.Errorf("pipeline: observer %q has no actions", o.Name)
		}
		for _, a := range o.Actions {
			if a.Sink == nil {
				return nil, fmt.Errorf("pipeline: action %q has no sink", a.ID)
			}
			if _, dup := p.byID[a.ID]; dup {
				return nil, fmt.Errorf("pipeline: duplicate action id %q", a.ID)
			}
			a.observer = o
			r := newRunner(p, a, set)
			if start, ok := opts.Start[a.ID]; ok {
				r.wm.Reset(start)
				r.resumeFrom, r.hasStart = start, true
			}
			p.runners = append(p.runners, r)
			p.byID[a.ID] = r
		}
	}
	return p, nil
}

// Push hands events over to the pipeline with their dispatch tickets: tickets[i] is
// the ticket of evs[i], which the pipeline acknowledges to the Acker once every
// matching action has settled the event. It never blocks. The pipeline owns both
// slices and the events from then on. It panics if the slices differ in length.
func (p *Pipeline) Push(evs []*decoder.Event, tickets []lsn.Ticket) {
	p.push(evs, tickets, nil)
}

func (p *Pipeline) push(evs []*decoder.Event, tickets []lsn.Ticket, rp *replayPush) {
	if len(evs) != len(tickets) {
		panic(fmt.Sprintf("pipeline: Push of %d events with %d tickets", len(evs), len(tickets)))
	}
	if len(evs) == 0 {
		return
	}
	var n int64
	for _, ev := range evs {
		n += int64(ev.Size())
	}
	p.inflight.Add(n)
	p.inMu.Lock()
	for _, ev := range evs {
		if rp == nil && ev.ID.Compare(p.routedMax) > 0 {
			p.routedMax = ev.ID
		}
	}
	p.inbox = append(p.inbox, pushed{evs, tickets, rp})
	p.inMu.Unlock()
	select {
	case p.inReady <- struct{}{}:
	default:
	}
}

// Full reports whether the bytes in flight have reached the budget; the replication
// session stops reading while it does.
func (p *Pipeline) Full() bool { return p.inflight.Load() >= p.opts.MaxInFlightBytes }

// Ready returns a channel that receives after in-flight bytes dropped below the budget.
func (p *Pipeline) Ready() <-chan struct{} { return p.ready }

// InFlightBytes returns the bytes of events pushed and not yet settled.
func (p *Pipeline) InFlightBytes() int64 { return p.inflight.Load() }

// Progress returns, per action id, the position up to which every event the action
// had to handle is settled: its checkpoint.
func (p *Pipeline) Progress() map[string]lsn.Position {
	out := make(map[string]lsn.Position, len(p.runners))
	for _, r := range p.runners {
		if pos, ok := r.wm.Acked(); ok {
			out[r.a.ID] = pos
		}
	}
	return out
}

// Run routes and delivers events until ctx is cancelled, then waits for every
// goroutine it started. Deliveries in progress are cancelled with ctx; their events
// stay unacknowledged. Use Drain first for a graceful stop.
func (p *Pipeline) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range p.runners {
		r.start(ctx, &wg)
	}
	p.route(ctx)
	wg.Wait()
	for _, r := range p.runners {
		r.stop()
	}
	var errs []error
	for _, r := range p.runners {
		if c, ok := r.a.Sink.(Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close sink of %s: %w", r.a.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Drain waits until every pushed event is settled or ctx is done; it returns
// ctx.Err() in the latter case. The caller stops pushing first.
func (p *Pipeline) Drain(ctx context.Context) error {
	for {
		if p.inflight.Load() == 0 {
			return nil
		}
		select {
		case <-p.settled:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// route is the router stage: it takes pushed batches in order, matches each event and
// hands it to the queues of the matching actions.
func (p *Pipeline) route(ctx context.Context) {
	var matched []*Observer
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.inReady:
		}
		p.inMu.Lock()
		batches := p.inbox
		p.inbox = nil
		p.inMu.Unlock()
		for _, b := range batches {
			for i, ev := range b.evs {
				size := int64(ev.Size()) // as counted by Push, before the row cache fills the event
				// Replayed events (PushReplayed) bypass the row cache: older than what it saw.
				if b.replay == nil {
					if grown := p.fill.Fill(ev); grown > 0 {
						p.inflight.Add(grown)
						size += grown
					}
				}
				matched = p.dispatch(ev, b.tickets[i], size, b.replay, matched[:0])
			}
			for _, r := range p.runners {
				r.wm.Advance(p.lastID) // actions with nothing in flight follow the stream
				r.kick()
			}
		}
	}
}

// routeTarget is an action an event is enqueued for, with the event's state in the
// debug history.
type routeTarget struct {
	r    *runner
	dbg  int       // index of the action's state in the event's debug record
	fail error     // the observer's condition failed: the action's on_failure policy applies
	late *lateCond // the observer's condition is left to the action's worker
}

// dispatch matches one event and enqueues it for every matching action, noting the
// verdicts in the debug history (/debug/events). rp is set for an event pushed by
// PushReplayed.
func (p *Pipeline) dispatch(ev *decoder.Event, ticket lsn.Ticket, size int64, rp *replayPush, matched []*Observer) []*Observer {
	now := time.Now()
	it := &item{ev: ev, ticket: ticket, size: size, start: now, replayed: rp != nil}
	p.m.processed.Inc()
	if ev.ID.Compare(p.lastID) > 0 && ev.Op != decoder.OpRead {
		p.lastID = ev.ID
	}
	if o, ok := p.targeted(ev); ok {
		matched = append(matched, o)
	} else {
		matched = p.ix.lookup(matched, ev)
	}
	if rp != nil {
		matched = rp.scope(p, ev, matched)
	}
	// The router's scratch, reused for every event: the ring copies what it keeps.
	verdicts, states, targets := p.verdicts[:0], p.states[:0], p.routeTo[:0]
	var lates []*lateCond // usually none: no allocation
	for _, o := range matched {
		v := debugVerdict{o: o}
		var condErr error
		var late *lateCond
		if o.Condition != nil {
			ok, done, err := p.match(o, ev)
			switch {
			case !done:
				late = &lateCond{o: o, verdict: len(verdicts)}
				lates = append(lates, late)
				v.verdict = verdictLater
			case err != nil:
				// Not a silent skip: the event fails for each action of the observer,
				// which parks it in the DLQ (or logs it) before it is settled.
				p.m.conditionErrors.Inc()
				condErr = &ConditionError{Observer: o.Name, Err: err}
				v.verdict, v.condErr = verdictError, RedactError(err)
				p.log.Warn().Str("observer", o.Name).Str("event_id", ev.ID.String()).
					Str("table", ev.Schema+"."+ev.Table).Str("error", v.condErr).
					Msg("condition could not be evaluated; the event fails for the observer's actions (on_failure)")
			case !ok:
				v.verdict = verdictFalse
				verdicts = append(verdicts, v)
				continue
			default:
				v.verdict = verdictTrue
			}
		}
		if condErr == nil && late == nil {
			p.m.matched.Inc()
		}
		v.nActions = len(o.Actions)
		for _, a := range o.Actions {
			st := debugState{a: a, status: statusPending}
			r := p.byID[a.ID]
			if !it.replayed && r.skip(ev) {
				st.status = statusSkipped
			} else {
				targets = append(targets, routeTarget{r, len(states), condErr, late})
			}
			states = append(states, st)
		}
		verdicts = append(verdicts, v)
	}
	ref := p.debug.add(ev, now, verdicts, states)
	p.verdicts, p.states, p.routeTo = verdicts, states, targets
	for _, l := range lates {
		l.ref = ref // before any worker can see l (enqueue locks the runner)
	}
	if len(targets) == 0 {
		p.finish(it)
		return matched
	}
	it.pending.Store(int32(len(targets)))
	for i, t := range targets {
		ref.i = t.dbg
		t.r.enqueue(it, ref, t.fail, t.late)
		targets[i] = routeTarget{} // the scratch keeps no runner or error alive
	}
	return matched
}

// match evaluates o's condition for ev on the router, marking the router busy
// meanwhile (see Stalled): within the condition's router budget when it is a
// RouterCondition (done is false when that ran out), else in full. A panic of the
// condition is its error, not the process's end.
func (p *Pipeline) match(o *Observer, ev *decoder.Event) (ok, done bool, err error) {
	p.evalSince.Store(time.Now().UnixNano())
	defer func() {
		p.evalSince.Store(0)
		if r := recover(); r != nil {
			ok, done, err = false, true, fmt.Errorf("condition panicked: %v", r)
		}
	}()
	if rc, isRC := o.Condition.(RouterCondition); isRC {
		return rc.TryMatch(ev)
	}
	ok, err = o.Condition.Match(ev)
	return ok, true, err
}

// Stalled reports whether the router has been evaluating one condition for longer
// than d: it is not routing other events meanwhile.
func (p *Pipeline) Stalled(d time.Duration) bool {
	since := p.evalSince.Load()
	return since != 0 && time.Since(time.Unix(0, since)) > d
}

// ConditionError is the failure of an observer's condition for one event. The event
// follows the on_failure policy of each of the observer's actions, like a delivery
// that failed for good (its error_class is condition_error).
type ConditionError struct {
	Observer string
	Err      error
}

func (e *ConditionError) Error() string {
	return "condition of observer " + e.Observer + " could not be evaluated: " + e.Err.Error()
}

// Unwrap returns the evaluation error.
func (e *ConditionError) Unwrap() error { return e.Err }

// Retryable is false: the same event gives the same error.
func (e *ConditionError) Retryable() bool { return false }

// ErrorClass names the failure in the DLQ.
func (e *ConditionError) ErrorClass() string { return "condition_error" }

// Redacted is Error with the row values an evaluation error may quote withheld.
func (e *ConditionError) Redacted() string {
	return "condition of observer " + e.Observer + " could not be evaluated: " + RedactError(e.Err)
}

// RedactError returns err's text for logs and /debug/events: an error in the chain
// with a method `Redacted() string` (eval.Error, ConditionError) gives the text
// without row values; the DLQ alone stores err.Error().
func RedactError(err error) string {
	if err == nil {
		return ""
	}
	var r interface {
		error
		Redacted() string
	}
	if !errors.As(err, &r) {
		return err.Error()
	}
	// Keep what wraps the redacted error ("render body_template: ...").
	if full, inner := err.Error(), r.Error(); strings.Contains(full, inner) {
		return strings.Replace(full, inner, r.Redacted(), 1)
	}
	return r.Redacted()
}

// done records that one action settled the item.
func (p *Pipeline) done(it *item) {
	if it.pending.Add(-1) == 0 {
		p.finish(it)
	}
}

// finish acknowledges a settled event and releases its bytes.
func (p *Pipeline) finish(it *item) {
	p.opts.Acker.Ack(it.ticket)
	p.m.processing.UpdateDuration(it.start)
	left := p.inflight.Add(-it.size)
	if left < p.opts.MaxInFlightBytes && left+it.size >= p.opts.MaxInFlightBytes {
		select {
		case p.ready <- struct{}{}:
		default:
		}
	}
	if left == 0 {
		select {
		case p.settled <- struct{}{}:
		default:
		}
	}
}
