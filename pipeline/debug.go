package pipeline

import (
	"sync"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
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
	Condition      string        `json:"condition,omitempty"`
	ConditionValue *bool         `json:"condition_value,omitempty"`
	ConditionError string        `json:"condition_error,omitempty"`
	Actions        []DebugAction `json:"actions,omitempty"`
}

// DebugAction is the state of one action's delivery of an event.
type DebugAction struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Status is pending, retrying, delivered, dead_lettered, dropped (on_failure log or
	// alert), skipped (already settled: checkpoint or dedup) or duplicate.
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
)

// debugRing keeps the most recent events. Safe for concurrent use.
type debugRing struct {
	mu   sync.Mutex
	buf  []*DebugEvent
	next int
	full bool
}

// DefaultDebugHistory is how many recent events the debug history keeps by default.
const DefaultDebugHistory = 256

func newDebugRing(n int) *debugRing {
	if n <= 0 {
		n = DefaultDebugHistory
	}
	return &debugRing{buf: make([]*DebugEvent, n)}
}

func (r *debugRing) add(d *DebugEvent) {
	r.mu.Lock()
	r.buf[r.next] = d
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
	r.mu.Unlock()
}

// setAction updates one action's state of a recorded event.
func (r *debugRing) setAction(a *DebugAction, status string, attempts int, err error, latency time.Duration) {
	if a == nil {
		return
	}
	r.mu.Lock()
	a.Status, a.Attempts = status, attempts
	if err != nil {
		a.LastError = RedactError(err)
	}
	if latency > 0 {
		a.LatencyMS = float64(latency.Microseconds()) / 1000
	}
	r.mu.Unlock()
}

// recent returns copies of up to n events, newest first.
func (r *debugRing) recent(n int) []DebugEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := r.next
	if r.full {
		size = len(r.buf)
	}
	if n <= 0 || n > size {
		n = size
	}
	out := make([]DebugEvent, 0, n)
	for i := 1; i <= n; i++ {
		d := r.buf[(r.next-i+len(r.buf))%len(r.buf)]
		out = append(out, copyDebug(d))
	}
	return out
}

func copyDebug(d *DebugEvent) DebugEvent {
	c := *d
	c.Observers = make([]DebugObserver, len(d.Observers))
	for i, o := range d.Observers {
		c.Observers[i] = o
		c.Observers[i].Actions = append([]DebugAction(nil), o.Actions...)
	}
	return c
}

// newDebugEvent starts the record of an event.
func newDebugEvent(ev *decoder.Event, now time.Time) *DebugEvent {
	return &DebugEvent{ID: ev.ID.String(), Schema: ev.Schema, Table: ev.Table, Op: ev.Op.String(),
		CommitTime: ev.CommitTime, RoutedAt: now, OldKind: ev.OldKind.String()}
}

// RecentEvents returns up to n recently routed events, newest first, with each
// observer's verdict and each action's state. Safe for concurrent use.
func (p *Pipeline) RecentEvents(n int) []DebugEvent { return p.debug.recent(n) }

// FindEvent returns the recent event with the given id, if it is still remembered.
func (p *Pipeline) FindEvent(id string) (DebugEvent, bool) {
	for _, d := range p.debug.recent(0) {
		if d.ID == id {
			return d, true
		}
	}
	return DebugEvent{}, false
}
