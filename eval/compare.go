package eval

import (
	"cmp"
	"fmt"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm/runtime"
)

// equal is the equality of ==, !=, in and the field_changed helpers: numbers compare
// by exact value whatever their kind (100 == 100.00), a number never equals a string
// ('100' == 100 is false), lists and objects compare element by element.
func equal(a, b any) bool {
	na, nb := asNumber(a), asNumber(b)
	if na.kind != notNum || nb.kind != notNum {
		if na.kind == notNum || nb.kind == notNum {
			return false
		}
		c, ok := compareNumbers(na, nb)
		return ok && c == 0
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	}
	if b == nil {
		return false
	}
	return runtime.Equal(a, b)
}

// compare implements <, <=, > and >=: numbers by exact value, strings
// lexicographically, times and durations in time order. Any other pair, such as a
// string and a number, is an error.
func compare(op string, a, b any) (bool, error) {
	var c int
	na, nb := asNumber(a), asNumber(b)
	switch {
	case na.kind != notNum && nb.kind != notNum:
		var ok bool
		if c, ok = compareNumbers(na, nb); !ok {
			return false, nil // NaN
		}
	default:
		switch x := a.(type) {
		case string:
			y, ok := b.(string)
			if !ok {
				return false, mismatch(op, a, b)
			}
			c = strings.Compare(x, y)
		case time.Time:
			y, ok := b.(time.Time)
			if !ok {
				return false, mismatch(op, a, b)
			}
			c = x.Compare(y)
		case time.Duration:
			y, ok := b.(time.Duration)
			if !ok {
				return false, mismatch(op, a, b)
			}
			c = cmp.Compare(x, y)
		default:
			return false, mismatch(op, a, b)
		}
	}
	switch op {
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	}
	return c >= 0, nil
}

func mismatch(op string, a, b any) error {
	return fmt.Errorf("cannot compare %s %s %s", typeName(a), op, typeName(b))
}

// in implements `x in list` (element equality as ==) and `key in object`.
func in(needle, haystack any) (bool, error) {
	switch h := haystack.(type) {
	case []any:
		for _, e := range h {
			if equal(needle, e) {
				return true, nil
			}
		}
		return false, nil
	case map[string]any:
		k, ok := needle.(string)
		if !ok {
			return false, fmt.Errorf("cannot test %s in object: keys are strings", typeName(needle))
		}
		_, ok = h[k]
		return ok, nil
	case nil, string:
		return false, fmt.Errorf("cannot use in with %s", typeName(haystack))
	}
	return runtime.In(needle, haystack), nil
}
