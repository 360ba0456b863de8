package cdc

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// PreflightError reports a problem found before streaming that an operator must fix:
// wrong wal_level, missing publication or slot, a slot held by another session, a
// role without REPLICATION. Retrying does not help.
type PreflightError struct {
	Check string // short name of the failed check ("wal_level", "slot", ...)
	Msg   string // what is wrong
	Hint  string // how to fix it
	Err   error
}

func (e *PreflightError) Error() string {
	s := "preflight " + e.Check + ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Hint != "" {
		s += " (hint: " + e.Hint + ")"
	}
	return s
}

func (e *PreflightError) Unwrap() error { return e.Err }

// GapError reports that changes may have been lost between what we delivered and what
// the server can still send: the slot is missing or invalidated, the server is a
// different cluster, or the slot was advanced past our checkpoint by someone else.
// The service stops; recovering needs an operator's decision.
type GapError struct {
	Reason string
	Slot   string
	Err    error
}

func (e *GapError) Error() string {
	s := "data gap on slot " + e.Slot + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *GapError) Unwrap() error { return e.Err }

// permanent reports whether a streaming error cannot be cured by reconnecting.
func permanent(err error) bool {
	var pe *PreflightError
	var ge *GapError
	if errors.As(err, &pe) || errors.As(err, &ge) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42704": // undefined_object: a missing publication is told apart by
			return false // Session.publicationProblem, a missing slot by recheck
		case "28000", "28P01", "42501": // authentication / privilege
			return true
		}
	}
	return false
}

// slotActive is returned when the slot is in use by another process; the session
// waits and tries again on reconnects.
type slotActive struct{ pid int32 }

func (e *slotActive) Error() string {
	return fmt.Sprintf("replication slot is active for PID %d", e.pid)
}
