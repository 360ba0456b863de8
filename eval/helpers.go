package eval

import (
	"errors"
	"fmt"
	"slices"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// hasField reports whether data has column name. An unavailable TOAST column has
// a value in the database, so it counts as present (reading it is still an error).
func (e *Env) hasField(name string) bool {
	_, _, i := e.index(rootData, name)
	return i >= 0 || e.unavailable(rootData, name)
}

// fieldChanged reports whether an UPDATE changed column name.
//
// INSERT, DELETE, TRUNCATE and message events change no field: false. For an UPDATE
// with both full images (old_kind full or cached) it compares the old and new values.
// An unavailable TOAST column is unchanged (PostgreSQL only omits unchanged values).
// Without a full old image only replica identity key columns can be answered:
// PostgreSQL sends the old key only when it changed, so under old_kind none a key
// column is unchanged and under old_kind key the old and new keys are compared. Any
// other column is an ErrNoOldImage error, never a silent false.
func (e *Env) fieldChanged(name string) (bool, error) {
	ev := e.ev
	if ev.Op != decoder.OpUpdate {
		return false, nil
	}
	if slices.Contains(ev.Unavailable, name) {
		return false, nil
	}
	nv, err := e.column(rootNew, name, false)
	if err != nil {
		return false, err
	}
	switch ev.OldKind {
	case decoder.OldFull, decoder.OldCached:
	case decoder.OldKey:
		if !e.isKey(name) {
			return false, e.noOldImage(name)
		}
	default:
		if !e.isKey(name) {
			return false, e.noOldImage(name)
		}
		return false, nil
	}
	ov, err := e.column(rootOld, name, false)
	if err != nil {
		return false, err
	}
	return !equal(ov, nv), nil
}

func (e *Env) noOldImage(name string) error {
	return &fieldError{kind: ErrNoOldImage, msg: fmt.Sprintf(
		"cannot tell whether %q changed: the UPDATE has no old value of it (old_kind %s); %s",
		name, e.ev.OldKind, e.oldHint())}
}

// fieldChangedTo reports field_changed(name) && new.name == v.
func (e *Env) fieldChangedTo(name string, v any) (bool, error) {
	ok, err := e.fieldChanged(name)
	if !ok || err != nil {
		return false, err
	}
	nv, err := e.column(rootNew, name, false)
	return err == nil && equal(nv, v), err
}

// fieldChangedFrom reports field_changed(name) && old.name == v.
func (e *Env) fieldChangedFrom(name string, v any) (bool, error) {
	ok, err := e.fieldChanged(name)
	if !ok || err != nil {
		return false, err
	}
	ov, err := e.column(rootOld, name, false)
	return err == nil && equal(ov, v), err
}

// helper names and their arity, without the environment the rewrite passes first.
var helpers = map[string]int{
	"has_field":          1,
	"field_changed":      1,
	"field_changed_to":   2,
	"field_changed_from": 2,
}

// Internal function names start with '$', which users cannot call (see rewrite.go).
const (
	fnPath = "$path" // ($env, root, opt, lenient, keys...)
	fnGet  = "$get"  // (base, opt, lenient, keys...)
	fnEq   = "$eq"
	fnNe   = "$ne"
	fnLt   = "$lt"
	fnLe   = "$le"
	fnGt   = "$gt"
	fnGe   = "$ge"
	fnIn   = "$in"
	fnNum  = "$num" // Numeric → float64 for arithmetic
)

func envOf(v any) (*Env, error) {
	e, ok := v.(*Env)
	if !ok || e == nil || e.ev == nil {
		return nil, fmt.Errorf("no event environment")
	}
	return e, nil
}

// stringArg returns argument i of a helper, which must be a string.
func stringArg(name string, args []any, i int) (string, error) {
	s, ok := args[i].(string)
	if !ok {
		return "", fmt.Errorf("%s: field name must be a string, not %s", name, typeName(args[i]))
	}
	return s, nil
}

// callHelper runs helper name; args[0] is the environment.
func callHelper(name string, args []any) (any, error) {
	e, err := envOf(args[0])
	if err != nil {
		return nil, err
	}
	f, err := stringArg(name, args, 1)
	if err != nil {
		return nil, err
	}
	switch name {
	case "has_field":
		return e.hasField(f), nil
	case "field_changed":
		return e.fieldChanged(f)
	case "field_changed_to":
		return e.fieldChangedTo(f, args[2])
	}
	return e.fieldChangedFrom(f, args[2])
}

func callPath(args ...any) (any, error) {
	e, err := envOf(args[0])
	if err != nil {
		return nil, err
	}
	return e.path(rootID(args[1].(int)), uint64(args[2].(int)), args[3].(bool), args[4:])
}

func callGet(args ...any) (any, error) {
	return get(args[0], uint64(args[1].(int)), args[2].(bool), args[3:])
}

func callCompare(op string) func(args ...any) (any, error) {
	return func(args ...any) (any, error) { return compare(op, args[0], args[1]) }
}

func callNumeric(args ...any) (any, error) {
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("numeric: argument must be a string, not %s", typeName(args[0]))
	}
	n, err := ParseNumeric(s)
	if err != nil {
		return nil, errors.New("numeric: argument is not a JSON number") // the value stays out of errors
	}
	return n, nil
}
