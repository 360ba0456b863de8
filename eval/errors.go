package eval

import (
	"errors"
	"fmt"
	"strings"

	"github.com/expr-lang/expr/file"
)

// Reasons an evaluation fails, for errors.Is. Each is wrapped in an *Error that
// names the field.
var (
	// ErrMissingField: a name or path reads a field the event does not have.
	// has_field, `?.` and `??` test for presence instead.
	ErrMissingField = errors.New("missing field")
	// ErrUnavailable: the value is an unchanged TOAST value PostgreSQL did not send
	// and that could not be filled (REPLICA IDENTITY FULL or caching would supply it).
	ErrUnavailable = errors.New("value not available")
	// ErrNoOldImage: field_changed and its variants cannot know the old value of a
	// column because the UPDATE carries no old image of it.
	ErrNoOldImage = errors.New("no old image")
)

// Error is a compile or evaluation error of a condition or template. Line and Column
// (1-based, counted in characters) locate it within the source given to
// CompileCondition or CompileTemplate; a caller adds the position of that source in
// its own file. Messages name fields instead of quoting row values (an expr
// built-in's own error, such as int('x'), may still quote its argument).
type Error struct {
	Line, Column int
	Msg          string
	Err          error // the cause, when there is one
	// run marks an error of an evaluation (not of compilation) whose message may
	// quote a row value: it came from an expr built-in or the VM, not from this
	// package's own functions.
	run bool
}

// Redacted returns the error without anything that may quote a row value: the
// message of an expr built-in or of the VM (int('SSN-…') names its argument) is cut
// to its first clause. Logs, /debug/events and the CLI print this; only the
// dead-letter entry, which holds the event anyway, keeps Error().
func (e *Error) Redacted() string {
	if !e.run {
		return e.Error()
	}
	head, _, _ := strings.Cut(e.Msg, ":")
	if len(head) > 40 || strings.ContainsAny(head, "\"'`()[]{}0123456789") || head == e.Msg {
		head = "the expression failed"
	}
	return fmt.Sprintf("%d:%d: %s (details withheld from logs as they may quote row values; the dead-letter entry keeps them)", e.Line, e.Column, head)
}

// Redact returns err.Error() with the row values of an evaluation error withheld
// (see Error.Redacted).
func Redact(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Redacted()
	}
	return err.Error()
}

// ownError marks an error of this package's functions: its message names fields and
// types, never row values.
type ownError struct{ error }

func (e ownError) Unwrap() error { return e.error }

// own wraps the errors of an internal function as ownError.
func own(f func(args ...any) (any, error)) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		v, err := f(args...)
		if err != nil {
			err = ownError{err}
		}
		return v, err
	}
}

// mayQuoteValues reports whether a run-time error's message may quote row values.
func mayQuoteValues(err error) bool {
	var o ownError
	var fe *fieldError
	return !errors.Is(err, ErrBudget) && !errors.As(err, &o) && !errors.As(err, &fe)
}

// Error returns "line:column: message".
func (e *Error) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg) }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// fieldError is a failed field access: a message and its reason (one of the Err
// sentinels).
type fieldError struct {
	kind error
	msg  string
}

func (e *fieldError) Error() string { return e.msg }
func (e *fieldError) Unwrap() error { return e.kind }

// toError converts an expr error (which carries a position) into an *Error.
func toError(err error) *Error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return &Error{Line: 1, Column: 1, Msg: err.Error(), Err: err}
	}
	e := &Error{Line: fe.Line, Column: fe.Column + 1, Msg: fe.Message, Err: fe.Prev}
	if e.Line == 0 {
		e.Line = 1
	}
	return e
}

// shift moves e from a placeholder's coordinates to its template's: the expression
// starts at line, col of the template.
func (e *Error) shift(line, col int) *Error {
	if e.Line == 1 {
		e.Column += col - 1
	}
	e.Line += line - 1
	return e
}
