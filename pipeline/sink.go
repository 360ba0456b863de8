package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Sink delivers events for one action. Deliver returns nil only once the target has
// accepted the event (the pipeline then counts it as delivered and may confirm it).
// Deliver must honour ctx and be safe for concurrent use by the action's workers.
type Sink interface {
	Deliver(ctx context.Context, ev *decoder.Event) error
}

// BatchSink is implemented by sinks that deliver several events in one request.
// DeliverBatch sets errs[i] to the outcome for evs[i]; len(errs) == len(evs).
// The events of one batch belong to different keys; order inside the batch is free.
type BatchSink interface {
	Sink
	DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error)
}

// Closer is implemented by sinks holding resources; Close is called once after the
// last delivery.
type Closer interface {
	Close() error
}

// Retryable reports whether a delivery error is worth retrying. An error decides for
// itself through a method `Retryable() bool` anywhere in its chain; context
// cancellation is not retryable; any other error is (network trouble is the common
// case, and a needless retry is cheaper than a lost event).
func Retryable(err error) bool {
	var r interface{ Retryable() bool }
	if errors.As(err, &r) {
		return r.Retryable()
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	return true
}

// RetryAfter returns the delay the target asked for (HTTP Retry-After), found through
// a method `RetryAfter() time.Duration` in the error chain, or 0.
func RetryAfter(err error) time.Duration {
	var r interface{ RetryAfter() time.Duration }
	if errors.As(err, &r) {
		return r.RetryAfter()
	}
	return 0
}

// ErrorClass returns the short, stable name of a delivery failure, as the DLQ's
// error_class records it: the class an error gives through a method
// `ErrorClass() string` in its chain ("http_400", "ssrf_blocked", "timeout"; each
// action's documentation lists its classes), else "permanent" or "transient" as
// Retryable decides.
func ErrorClass(err error) string {
	var c interface{ ErrorClass() string }
	if errors.As(err, &c) && c.ErrorClass() != "" {
		return c.ErrorClass()
	}
	if Retryable(err) {
		return "transient"
	}
	return "permanent"
}

// DeadLetter is an event whose action failed for good.
type DeadLetter struct {
	Event      *decoder.Event
	Observer   string
	Action     string // action id ("observer.name")
	ActionType string
	Err        error
	Attempts   int
	FirstTry   time.Time
	LastTry    time.Time
}

// DLQ stores dead letters durably. Put returns nil only once the letter is stored;
// until then the event is not settled and nothing past it is confirmed.
type DLQ interface {
	Put(ctx context.Context, dl DeadLetter) error
}

// Acker receives the dispatch ticket of every event once all its matching actions
// have settled it (delivered, parked in the DLQ, or dropped by policy).
type Acker interface {
	Ack(t lsn.Ticket) bool
}
