package pipeline

import (
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// DebugEvent records what happened to one recent event: which observers were
// candidates (same table and operation), what their conditions said, and what each
// action did with it. It carries no row values.
type DebugEvent struct {
	ID         string          `json:"id"`
	Schema     string          `json:"schema"`
	Table      string          `json:"table"`
	Op         string          `json:"op"`
	CommitTime time.Time       `json:"commit_time"`
	RoutedAt   time.Time       `json:"routed_at"`
	OldKind    string          `json:"old_kind"`
	Observers  []DebugObserver `json:"observers"`
}

// DebugObserver is one candidate observer's verdict on an event.
type DebugObserver struct {
	Name string `json:"name"`
	// Matched is true when the observer fired (no condition, or it held).
	Matched bool `json:"matched"`
	// Condition is the condition source ("" for none); ConditionError is set when it
	// could not be evaluated.
	Condition      string `json:"condition,omitempty"`
	ConditionValue *bool  `json:"condition_value,omitempty"`
	ConditionError string `json:"condition_error,omitempty"`
	// ConditionPending is true while the condition, too costly for the router's own
	// budget, waits to be evaluated by the actions' workers in the row's order.
	ConditionPending bool          `json:"condition_pending,omitempty"`
	Actions          []DebugAction `json:"actions,omitempty"`
}

// DebugAction is the state of one action's delivery of an event.
type DebugAction struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Status is pending, retrying, delivered, dead_lettered, dropped (on_failure log or
	// alert), skipped (already settled: checkpoint or dedup), duplicate, or not_matched
	// (the observer's condition, left to the action's worker, did not hold).
	Status    string  `json:"status"`
	Attempts  int     `json:"attempts"`
	LastError string  `json:"last_error,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
}

// Debug states.
const (
	statusPending   = "pending"
	statusRetrying  = "retrying"
	statusDelivered = "delivered"
	statusDLQ       = "dead_lettered"
	statusDropped   = "dropped"
	statusSkipped   = "skipped"
	statusDuplicate = "duplicate"
	statusNotMatch  = "not_matched" // its observer's condition, evaluated by the worker, did not hold
)

// debugRing keeps what routing decided for the most recent events. Routing writes
// each event's verdicts into a slot of a ring allocated once, reusing the slot's
// slices when the ring wraps, so recording costs no allocation; the DebugEvent
// records are built only when asked for (RecentEvents, FindEvent). Safe for
// concurrent use.
type debugRing struct {
	mu    sync.Mutex
	slots []debugSlot
	next  int
	full  bool
	seq   uint64 // generations handed out
}

// debugSlot is one recorded event. gen changes whenever the slot is reused, which
// makes the debugRefs into its previous event stale.
type debugSlot struct {
	gen       uint64
	id        lsn.Position
	schema    string
	table     string
	op        decoder.Op
	oldKind   decoder.OldKind
	commit    time.Time
	routed    time.Time
	observers []debugVerdict
	actions   []debugState // the actions of observers, in their order
}

// verdict is what an observer's condition said of an event.
type verdict uint8

const (
	verdictNone  verdict = iota // no condition: the observer fired
	verdictTrue                 // the condition held
	verdictFalse                // the condition did not hold
	verdictError                // the condition could not be evaluated
	verdictLater                // left to the actions' workers (RouterCondition)
)

// debugVerdict is one candidate observer's verdict; the states of its actions are
// the next nActions entries of the slot's actions.
type debugVerdict struct {
	o        *Observer
	verdict  verdict
	condErr  string // redacted
	nActions int
}

// debugState is one action's handling of a recorded event.
type debugState struct {
	a        *Action
	status   string
	attempts int
	lastErr  string // redacted
	latency  time.Duration
}

// debugRef points at one action's state of a recorded event; it goes stale when the
// ring reuses the event's slot. The zero debugRef points at nothing.
type debugRef struct {
	slot *debugSlot
	gen  uint64
	i    int
}

// DefaultDebugHistory is how many recent events the debug history keeps by default.
const DefaultDebugHistory = 256

func newDebugRing(n int) *debugRing {
	if n <= 0 {
		n = DefaultDebugHistory
	}
	return &debugRing{slots: make([]debugSlot, n)}
}

// add records an event routed at now with the verdicts obs and the action states
// acts (copied: the caller may reuse both), and returns the reference to acts[0];
// acts[i] is the same with i set.
func (r *debugRing) add(ev *decoder.Event, now time.Time, obs []debugVerdict, acts []debugState) debugRef {
	r.mu.Lock()
	s := &r.slots[r.next]
	r.seq++
	s.gen = r.seq
	s.id, s.schema, s.table, s.op, s.oldKind, s.commit, s.routed = ev.ID, ev.Schema, ev.Table, ev.Op, ev.OldKind, ev.CommitTime, now
	s.observers = append(s.observers[:0], obs...)
	s.actions = append(s.actions[:0], acts...)
	r.next = (r.next + 1) % len(r.slots)
	if r.next == 0 {
		r.full = true
	}
	r.mu.Unlock()
	return debugRef{slot: s, gen: s.gen}
}

// setAction updates one action's state of a recorded event, unless the ring has
// reused its slot since.
func (r *debugRing) setAction(ref debugRef, status string, attempts int, err error, latency time.Duration) {
	if ref.slot == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ref.slot.gen != ref.gen {
		return
	}
	a := &ref.slot.actions[ref.i]
	a.status, a.attempts = status, attempts
	if err != nil {
		a.lastErr = RedactError(err)
	}
	if latency > 0 {
		a.latency = latency
	}
}

// setVerdict records the verdict of the observer at index i of a recorded event once
// an action's worker evaluated its condition, unless the ring has reused the slot.
func (r *debugRing) setVerdict(ref debugRef, i int, v verdict, condErr string) {
	if ref.slot == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ref.slot.gen != ref.gen || i >= len(ref.slot.observers) {
		return
	}
	ref.slot.observers[i].verdict, ref.slot.observers[i].condErr = v, condErr
}

// recent builds up to n events (all for n <= 0), newest first.
func (r *debugRing) recent(n int) []DebugEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := r.next
	if r.full {
		size = len(r.slots)
	}
	if n <= 0 || n > size {
		n = size
	}
	out := make([]DebugEvent, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.slots[(r.next-i+len(r.slots))%len(r.slots)].event())
	}
	return out
}

// find builds the recorded event id, newest first.
func (r *debugRing) find(id lsn.Position) (DebugEvent, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := r.next
	if r.full {
		size = len(r.slots)
	}
	for i := 1; i <= size; i++ {
		if s := &r.slots[(r.next-i+len(r.slots))%len(r.slots)]; s.id == id {
			return s.event(), true
		}
	}
	return DebugEvent{}, false
}

// event builds the DebugEvent of a slot (under the ring's lock).
func (s *debugSlot) event() DebugEvent {
	d := DebugEvent{ID: s.id.String(), Schema: s.schema, Table: s.table, Op: s.op.String(),
		CommitTime: s.commit, RoutedAt: s.routed, OldKind: s.oldKind.String()}
	if len(s.observers) > 0 {
		d.Observers = make([]DebugObserver, 0, len(s.observers))
	}
	next := 0
	for _, v := range s.observers {
		o := DebugObserver{Name: v.o.Name, Matched: v.verdict == verdictNone || v.verdict == verdictTrue, ConditionError: v.condErr}
		if c, ok := v.o.Condition.(interface{ String() string }); ok && v.verdict != verdictNone {
			o.Condition = c.String()
		}
		if v.verdict == verdictTrue || v.verdict == verdictFalse {
			held := v.verdict == verdictTrue
			o.ConditionValue = &held
		}
		o.ConditionPending = v.verdict == verdictLater
		if v.nActions > 0 {
			o.Actions = make([]DebugAction, v.nActions)
			for i, a := range s.actions[next : next+v.nActions] {
				o.Actions[i] = DebugAction{ID: a.a.ID, Type: a.a.Type, Status: a.status, Attempts: a.attempts, LastError: a.lastErr}
				if a.latency > 0 {
					o.Actions[i].LatencyMS = float64(a.latency.Microseconds()) / 1000
				}
			}
			next += v.nActions
		}
		d.Observers = append(d.Observers, o)
	}
	return d
}

// RecentEvents returns up to n recently routed events, newest first, with each
// observer's verdict and each action's state. The records are built by this call
// (routing only notes the verdicts); the returned slice is the caller's. Safe for
// concurrent use.
func (p *Pipeline) RecentEvents(n int) []DebugEvent { return p.debug.recent(n) }

// FindEvent returns the recent event with the given id ("0/16B3748:3"), if it is
// still remembered. Safe for concurrent use.
func (p *Pipeline) FindEvent(id string) (DebugEvent, bool) {
	pos, err := lsn.ParsePosition(id)
	if err != nil {
		return DebugEvent{}, false
	}
	return p.debug.find(pos)
}
