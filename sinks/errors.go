// Package sinks holds what the action sinks share: the contract every action type
// follows (Deps, Batch, KeyError) and how a delivery error says whether it is worth
// retrying (Error). Each action type lives in its own sub-package (sinks/file,
// sinks/webhook, ...), exports a Config (yaml tags; Defaults fills absent keys,
// Validate only checks) and New(ctx, cfg, Deps), and implements the small Sink
// interface that package pipeline declares; sinks never import pipeline or cdc.
// docs/contributing.md walks through adding one.
package sinks

import (
	"errors"
	"time"
)

// Error is a delivery error that says whether retrying can help and, optionally, how
// long the target asked us to wait. The pipeline finds it with errors.As through the
// methods Retryable and RetryAfter.
type Error struct {
	Err   error
	Retry bool          // transient: a later attempt may succeed
	After time.Duration // the target's requested delay (HTTP Retry-After), or 0
	// Class is a short, stable name of the failure for logs, metrics and the DLQ
	// ("http_400", "timeout", "too_large"); never a row value.
	Class string
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Class
	}
	return e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether a later attempt may succeed.
func (e *Error) Retryable() bool { return e.Retry }

// ErrorClass returns Class, for the pipeline and the DLQ (pipeline.ErrorClass).
func (e *Error) ErrorClass() string { return e.Class }

// RetryAfter returns the delay the target asked for.
func (e *Error) RetryAfter() time.Duration { return e.After }

// Permanent marks err as not worth retrying: the event goes to the observer's
// on_failure policy (usually the DLQ) at once.
func Permanent(class string, err error) error {
	if err == nil {
		err = errors.New(class)
	}
	return &Error{Err: err, Class: class}
}

// Transient marks err as worth retrying, after at least after when it is positive.
func Transient(class string, err error, after time.Duration) error {
	if err == nil {
		err = errors.New(class)
	}
	return &Error{Err: err, Retry: true, After: after, Class: class}
}

// Class returns the failure class of err, or "error" when it has none.
func Class(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Class != "" {
		return e.Class
	}
	return "error"
}
