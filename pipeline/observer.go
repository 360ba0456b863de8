package pipeline

import (
	"fmt"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// FailurePolicy says what happens to an event whose action failed for good.
type FailurePolicy uint8

// Failure policies, after the original system's on_failure.
const (
	FailureDLQ   FailurePolicy = iota // park it in the dead-letter queue, then settle
	FailureLog                        // log it at error level, then settle
	FailureAlert                      // log it at error level marked alert=true, then settle
)

// ParseFailurePolicy maps "dlq", "log" and "alert" to a FailurePolicy.
func ParseFailurePolicy(s string) (FailurePolicy, error) {
	switch s {
	case "dlq":
		return FailureDLQ, nil
	case "log":
		return FailureLog, nil
	case "alert":
		return FailureAlert, nil
	}
	return 0, fmt.Errorf("unknown failure policy %q (want log, alert or dlq)", s)
}

// String returns the configuration name of the policy.
func (f FailurePolicy) String() string {
	switch f {
	case FailureLog:
		return "log"
	case FailureAlert:
		return "alert"
	}
	return "dlq"
}

// Condition decides whether an observer fires for an event. An error means the
// condition could not be evaluated (for example a field that is not in the row): the
// event fails for each of the observer's actions, which apply their on_failure policy
// (a ConditionError, error class condition_error), as after a permanent delivery
// failure. An error with a method `Redacted() string` gives the text for logs and
// /debug/events (see RedactError).
type Condition interface {
	Match(ev *decoder.Event) (bool, error)
}

// RouterCondition is a Condition that the router first tries within a small budget
// of its own. TryMatch reports done == false when that budget ran out: the event then
// goes to the observer's actions undecided, and the worker of each action evaluates
// the condition with its full budget (Match, once per event and observer) before it
// delivers, in the row's order. So a slow evaluation holds back its own row's
// deliveries, never the routing of the other rows.
type RouterCondition interface {
	Condition
	TryMatch(ev *decoder.Event) (ok, done bool, err error)
}

// Observer fires its actions for the events of one table (or every table) and the
// given operations whose condition holds.
type Observer struct {
	Name string
	// Schema and Table select the table; both empty means every table ("*").
	Schema, Table string
	// Ops lists the operations the observer fires on (OpMessage for CUSTOM).
	Ops []decoder.Op
	// MessagePrefix selects logical decoding messages by prefix (OpMessage only).
	MessagePrefix string
	// Condition is optional.
	Condition Condition
	Actions   []*Action
}

// Action is one configured delivery of an observer.
type Action struct {
	// ID identifies the action in checkpoints, the DLQ and metrics ("observer.name").
	ID   string
	Type string // action type ("webhook", "file", ...)
	Sink Sink
	// Retry is the observer's retry policy; OnFailure what happens after the last try.
	Retry     RetryPolicy
	OnFailure FailurePolicy
	// Concurrency is the number of workers delivering for this action (at least 1).
	// Events of one row (table + key) are always delivered one after the other in
	// commit order; with Ordered set every event is (one queue, one worker).
	Concurrency int
	Ordered     bool
	// BatchSize bounds how many events of different rows one DeliverBatch call carries
	// when the sink is a BatchSink (default 1: no batching).
	BatchSize int

	observer *Observer
}

// Observer returns the observer the action belongs to (set by New).
func (a *Action) Observer() *Observer { return a.observer }

type tableKey struct{ schema, table string }

// index finds the observers of an event by table and operation: a map lookup, not a
// scan over all observers.
type index struct {
	byTable  map[tableKey][opCount][]*Observer
	wildcard [opCount][]*Observer
}

const opCount = int(decoder.OpRead) + 1

func newIndex(observers []*Observer) *index {
	ix := &index{byTable: map[tableKey][opCount][]*Observer{}}
	for _, o := range observers {
		for _, op := range o.Ops {
			if int(op) >= opCount {
				continue
			}
			if op == decoder.OpMessage || (o.Schema == "" && o.Table == "") {
				ix.wildcard[op] = append(ix.wildcard[op], o)
				continue
			}
			k := tableKey{o.Schema, o.Table}
			e := ix.byTable[k]
			e[op] = append(e[op], o)
			ix.byTable[k] = e
		}
	}
	return ix
}

// needsImages reports whether an observer can fire on an UPDATE or DELETE of the
// table: only such events are completed from the row cache (old image, unchanged
// TOAST columns), so only such tables need their rows cached.
func (ix *index) needsImages(schema, table string) bool {
	e := ix.byTable[tableKey{schema, table}]
	for _, op := range []decoder.Op{decoder.OpUpdate, decoder.OpDelete} {
		if len(e[op]) > 0 || len(ix.wildcard[op]) > 0 {
			return true
		}
	}
	return false
}

// lookup appends to dst the observers registered for the event's table and operation
// and returns it. Messages are matched by prefix, not by table.
func (ix *index) lookup(dst []*Observer, ev *decoder.Event) []*Observer {
	op := ev.Op
	if int(op) >= opCount {
		return dst
	}
	if op == decoder.OpMessage {
		for _, o := range ix.wildcard[op] {
			if ev.Message != nil && (o.MessagePrefix == "" || o.MessagePrefix == ev.Message.Prefix) {
				dst = append(dst, o)
			}
		}
		return dst
	}
	if e, ok := ix.byTable[tableKey{ev.Schema, ev.Table}]; ok {
		dst = append(dst, e[op]...)
	}
	return append(dst, ix.wildcard[op]...)
}
