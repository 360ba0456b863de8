package database

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraiseql/fraiseql-observers/sinks"
)

// transientClasses are the SQLSTATE classes (first two characters) after which a
// later call may succeed. Every other server error is permanent: the server answered,
// and it would answer the same for the same event.
var transientClasses = map[string]bool{
	"08": true, // connection exception
	"25": true, // invalid transaction state (read_only_sql_transaction: a standby after failover)
	"28": true, // invalid authorization (a password being rotated)
	"3D": true, // invalid catalog name: the database is not there (yet)
	"40": true, // transaction rollback: serialization_failure, deadlock_detected
	"53": true, // insufficient resources: disk full, out of memory, too many connections
	"55": true, // object not in prerequisite state: lock_not_available, object_in_use
	"57": true, // operator intervention: query_canceled (statement_timeout), admin_shutdown
	"58": true, // system error (outside PostgreSQL): I/O error
	"72": true, // snapshot too old
	"XX": true, // internal error
}

// Classify turns the error of a call of function fn made under callCtx (derived from
// ctx with the call's timeout) into a *sinks.Error. A server error is classified by
// its SQLSTATE (class "sql_<code>"), never by its message; a timeout is transient
// ("timeout"); a cancelled ctx is returned as it is (the pipeline is stopping); any
// other failure (connecting, a broken connection, the pool) is transient
// ("connection").
func Classify(ctx, callCtx context.Context, fn string, err error) error {
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("call %s: %w", fn, err)
	}
	if errors.Is(callCtx.Err(), context.DeadlineExceeded) {
		// Whatever the call returned after its deadline (a broken connection, or
		// query_canceled from the cancel request), it ran out of time.
		return sinks.Transient("timeout", fmt.Errorf("call %s: timed out: %w", fn, err), 0)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		class := "sql_" + pgErr.Code
		err = &ServerError{Function: fn, Err: pgErr}
		if len(pgErr.Code) == 5 && transientClasses[pgErr.Code[:2]] {
			return sinks.Transient(class, err, 0)
		}
		return sinks.Permanent(class, err)
	}
	err = fmt.Errorf("call %s: %w", fn, err)
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return sinks.Transient("timeout", err, 0)
	}
	return sinks.Transient("connection", err, 0)
}

// ServerError is an error PostgreSQL returned for a call. Its text shows the SQLSTATE
// and, except for data exceptions (class 22) and errors raised by PL/pgSQL code (class
// P0), the server's message: those two may quote row values ("invalid input syntax
// for type integer: \"abc\"", a RAISE with the event's data), which must not reach
// logs. The full *pgconn.PgError stays reachable with errors.As.
type ServerError struct {
	Function string // the quoted function name
	Err      *pgconn.PgError
}

// Error returns "call fn: ERROR: message (SQLSTATE code)".
func (e *ServerError) Error() string {
	msg := e.Err.Message
	if c := e.Err.Code; len(c) < 2 || c[:2] == "22" || c[:2] == "P0" {
		msg = "message withheld, it may hold row values"
	}
	return "call " + e.Function + ": " + e.Err.Severity + ": " + msg + " (SQLSTATE " + e.Err.Code + ")"
}

// Unwrap returns the server's error.
func (e *ServerError) Unwrap() error { return e.Err }
