package eval

import (
	"errors"
	"fmt"

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
