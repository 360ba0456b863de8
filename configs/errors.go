package configs

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Pos is a position in a configuration file. Line and Column count from 1; a
// zero Line means the position is the file as a whole.
type Pos struct {
	File   string
	Line   int
	Column int
}

// String returns "file:line:column", or just "file" when Line is 0.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// IsValid reports whether p names a line of a file.
func (p Pos) IsValid() bool { return p.Line > 0 }

// Error is one problem in a configuration file, at a position.
// Msg never contains a secret: DSNs are redacted and environment variables are
// named, never expanded.
type Error struct {
	Pos Pos
	Msg string
}

// Error returns "file:line:column: message".
func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Errors is every problem found in one configuration, sorted by position.
// Load and Parse return it as their error; errors.As(err, &errs) finds it.
type Errors struct {
	List []*Error
}

// Error returns the errors one per line.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, err := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the errors of the list, for errors.Is and errors.As.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.List))
	for i, err := range e.List {
		errs[i] = err
	}
	return errs
}

// add appends an error at pos.
func (e *Errors) add(pos Pos, format string, args ...any) {
	e.List = append(e.List, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// err returns e sorted by position, or nil when it is empty.
func (e *Errors) err() error {
	if len(e.List) == 0 {
		return nil
	}
	sortByPos(e.List, func(err *Error) Pos { return err.Pos })
	// A value reached through several aliases or merge keys is reported once.
	e.List = slices.CompactFunc(e.List, func(a, b *Error) bool { return *a == *b })
	return e
}

// Warning is a valid but probably unintended setting, such as an admin endpoint
// reachable from other hosts without a token. Loading succeeds with warnings;
// the caller decides how to show them.
type Warning struct {
	Pos Pos
	Msg string
}

// String returns "file:line:column: message".
func (w Warning) String() string { return w.Pos.String() + ": " + w.Msg }

func sortByPos[T any](list []T, pos func(T) Pos) {
	slices.SortStableFunc(list, func(a, b T) int {
		pa, pb := pos(a), pos(b)
		return cmp.Or(
			cmp.Compare(pa.File, pb.File),
			cmp.Compare(pa.Line, pb.Line),
			cmp.Compare(pa.Column, pb.Column),
		)
	})
}
