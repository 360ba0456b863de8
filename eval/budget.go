package eval

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr/builtin"
)

// Budget bounds what one evaluation (one condition, or one template render) may do.
// Zero fields mean the defaults below. A breach fails that evaluation with an *Error
// wrapping ErrBudget; it never crashes or hangs the process.
type Budget struct {
	// MaxSteps bounds the iterations of predicates (all, any, map, filter, reduce,
	// ...) and the calls of size-checked functions.
	MaxSteps int64
	// Timeout bounds the evaluation's wall-clock time.
	Timeout time.Duration
	// MaxMemoryBytes bounds the bytes the evaluation's strings and lists may take:
	// functions whose result can be much larger than their arguments (repeat,
	// replace, join, toJSON, string) are refused before they allocate, the others are
	// counted after.
	MaxMemoryBytes int64
	// MaxRenderedBytes bounds the size of a rendered template.
	MaxRenderedBytes int64
}

// Budget defaults.
const (
	DefaultMaxSteps         = 1_000_000
	DefaultTimeout          = 100 * time.Millisecond
	DefaultMaxMemoryBytes   = 64 << 20
	DefaultMaxRenderedBytes = 10 << 20
)

// ErrBudget is the reason of an evaluation that exceeded its Budget.
var ErrBudget = errors.New("evaluation budget exceeded")

func (b Budget) withDefaults() Budget {
	if b.MaxSteps <= 0 {
		b.MaxSteps = DefaultMaxSteps
	}
	if b.Timeout <= 0 {
		b.Timeout = DefaultTimeout
	}
	if b.MaxMemoryBytes <= 0 {
		b.MaxMemoryBytes = DefaultMaxMemoryBytes
	}
	if b.MaxRenderedBytes <= 0 {
		b.MaxRenderedBytes = DefaultMaxRenderedBytes
	}
	return b
}

// meter is the running account of one evaluation, kept in its Env.
type meter struct {
	b        *Budget
	steps    int64
	mem      int64
	deadline time.Time // set at the first step: an evaluation without one is short
	active   bool
}

// begin starts an evaluation's account; it returns false when one is already running
// (a template's placeholders share their render's account).
func (e *Env) begin(b *Budget) bool {
	if e.m.active {
		return false
	}
	e.m = meter{b: b, active: true}
	return true
}

func (e *Env) end() { e.m.active = false }

func budgetError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBudget}, args...)...)
}

// step counts one unit of work and checks the clock every 64 steps.
func (e *Env) step() error {
	if !e.m.active {
		return nil
	}
	e.m.steps++
	if e.m.steps > e.m.b.MaxSteps {
		return budgetError("more than %d steps (evaluation.max_steps)", e.m.b.MaxSteps)
	}
	if e.m.steps == 1 {
		e.m.deadline = time.Now().Add(e.m.b.Timeout)
	}
	if e.m.steps&63 == 0 && time.Now().After(e.m.deadline) {
		return budgetError("ran longer than %s (evaluation.timeout)", e.m.b.Timeout)
	}
	return nil
}

// stepN counts n units of work at once (a built-in's loop).
func (e *Env) stepN(n int64) error {
	if !e.m.active {
		return nil
	}
	if n < 0 || n > e.m.b.MaxSteps-e.m.steps {
		return budgetError("more than %d steps (evaluation.max_steps)", e.m.b.MaxSteps)
	}
	e.m.steps += n - 1
	return e.step()
}

// uniqSteps is the number of comparisons uniq makes at worst on v.
func uniqSteps(v any) int64 {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return 1
	}
	n := int64(rv.Len())
	return max(n*n/2, 1)
}

// reserve accounts n more bytes, failing when they would pass the memory budget.
func (e *Env) reserve(n int64) error {
	if !e.m.active {
		return nil
	}
	if n < 0 || e.m.mem+n > e.m.b.MaxMemoryBytes {
		return budgetError("needs more than %d bytes (evaluation.max_memory_bytes)", e.m.b.MaxMemoryBytes)
	}
	e.m.mem += n
	return e.step()
}

// shallowSize estimates the bytes a value's top level takes.
func shallowSize(v any) int64 {
	switch x := v.(type) {
	case string:
		return int64(len(x))
	case []any:
		return 16 * int64(len(x))
	case map[string]any:
		return 48 * int64(len(x))
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		return 16 * int64(rv.Len())
	case reflect.Map:
		return 48 * int64(rv.Len())
	}
	return 0
}

// textSize returns an upper bound of the bytes v takes written as text or JSON (a
// string counts 6 bytes per byte, the worst JSON escape), stopping once it passes
// limit: lists that repeat one large value are counted as often as they repeat it.
func textSize(v any, limit int64) int64 {
	var n int64
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if n > limit || depth > 10_000 {
			n = limit + 1
			return
		}
		switch x := v.(type) {
		case string:
			n += int64(len(x)) + 2 // escapes are checked on the written result
		case []any:
			n += 2
			for _, e := range x {
				n++
				walk(e, depth+1)
				if n > limit {
					return
				}
			}
		case map[string]any:
			n += 2
			for k, e := range x {
				n += 6*int64(len(k)) + 4
				walk(e, depth+1)
				if n > limit {
					return
				}
			}
		default:
			rv := reflect.ValueOf(v)
			switch rv.Kind() {
			case reflect.Slice, reflect.Array:
				for i := 0; i < rv.Len() && n <= limit; i++ {
					n++
					walk(rv.Index(i).Interface(), depth+1)
				}
			case reflect.Map:
				it := rv.MapRange()
				for it.Next() && n <= limit {
					walk(it.Key().Interface(), depth+1)
					walk(it.Value().Interface(), depth+1)
				}
			default:
				n += 64 // numbers, times, booleans, null
			}
		}
	}
	walk(v, 0)
	return n
}

// The functions below replace expr built-ins whose result can be much larger than
// their arguments: each checks the result's size against the budget before it is
// built, then runs the built-in itself.

const (
	fnStep = "$step" // a predicate's iteration: $step($env, body)
	fnAcct = "$acct" // a result counted after it was built: $acct($env, value)
	// fnAcctString is $acct for built-ins known to return a string, keeping the type
	// for the compile-time checks.
	fnAcctString = "$acct_s"
)

// stringBuiltins are the counted built-ins that return a string.
var stringBuiltins = map[string]bool{"upper": true, "lower": true, "trim": true, "trimPrefix": true, "trimSuffix": true}

// guardedBuiltins maps an expr built-in to its size-checked replacement and the
// argument counts the replacement is used for (others keep expr's own error).
var guardedBuiltins = map[string][]int{
	"repeat": {2}, "replace": {3}, "join": {1, 2}, "toJSON": {1}, "string": {1},
	"uniq": {1}, // quadratic in time: its comparisons are counted as steps
}

// countedBuiltins are built-ins whose result is at most about as large as their
// arguments: it is counted against the memory budget after it is built.
var countedBuiltins = map[string]bool{
	"concat": true, "flatten": true, "split": true, "splitAfter": true, "fromJSON": true,
	"map": true, "filter": true, "groupBy": true, "sortBy": true,
	"sort": true, "reverse": true, "uniq": true, "keys": true, "values": true, "toPairs": true,
	"fromPairs": true, "take": true,
}

func guardName(name string) string { return "$g_" + name }

func builtinFunc(name string) func(args ...any) (any, error) {
	f := builtin.Builtins[builtin.Index[name]]
	switch {
	case f.Func != nil:
		return f.Func
	case f.Safe != nil:
		return func(args ...any) (any, error) {
			v, _, err := f.Safe(args...)
			return v, err
		}
	case f.Fast != nil:
		return func(args ...any) (any, error) { return f.Fast(args[0]), nil }
	}
	panic("eval: built-in " + name + " has no function")
}

// guardFunctions returns the size-checked built-ins and the step and accounting
// functions.
func guardFunctions() []*builtin.Function {
	anyT := reflect.TypeFor[any]()
	str := reflect.TypeFor[string]()
	fnType := func(n int, out reflect.Type) reflect.Type {
		in := make([]reflect.Type, n)
		for i := range in {
			in[i] = anyT
		}
		return reflect.FuncOf(in, []reflect.Type{out}, false)
	}
	var fns []*builtin.Function
	for name, arities := range guardedBuiltins {
		orig := builtinFunc(name)
		check := sizeCheck(name)
		out := str
		if name == "uniq" {
			out = anyT
		}
		var types []reflect.Type
		for _, n := range arities {
			types = append(types, fnType(n+1, out))
		}
		fns = append(fns, &builtin.Function{
			Name: guardName(name),
			Func: func(args ...any) (any, error) {
				e, err := envOf(args[0])
				if err != nil {
					return nil, err
				}
				if name == "uniq" {
					if err := e.stepN(uniqSteps(args[1])); err != nil {
						return nil, err
					}
				} else if err := e.reserve(check(e, args[1:])); err != nil {
					return nil, err
				}
				return orig(args[1:]...)
			},
			Types: types,
		})
	}
	fns = append(fns,
		&builtin.Function{
			Name: fnStep,
			Func: func(args ...any) (any, error) {
				e, err := envOf(args[0])
				if err != nil {
					return nil, err
				}
				return args[1], e.step()
			},
			Types: []reflect.Type{fnType(2, anyT)},
		},
		&builtin.Function{
			Name: fnAcct,
			Func: func(args ...any) (any, error) {
				e, err := envOf(args[0])
				if err != nil {
					return nil, err
				}
				return args[1], e.reserve(shallowSize(args[1]))
			},
			Types: []reflect.Type{fnType(2, anyT)},
		},
		&builtin.Function{
			Name: fnAcctString,
			Func: func(args ...any) (any, error) {
				e, err := envOf(args[0])
				if err != nil {
					return nil, err
				}
				return args[1], e.reserve(shallowSize(args[1]))
			},
			Types: []reflect.Type{reflect.TypeFor[func(any, string) string]()},
		},
	)
	return fns
}

// sizeCheck returns the function computing an upper bound of the result's bytes of a
// guarded built-in; the remaining budget limits how far it looks.
func sizeCheck(name string) func(e *Env, args []any) int64 {
	limit := func(e *Env) int64 { return max(e.m.b.MaxMemoryBytes-e.m.mem, 0) }
	switch name {
	case "repeat":
		return func(e *Env, a []any) int64 {
			s, _ := a[0].(string)
			n, ok := toInt64(a[1])
			if !ok || n <= 0 || len(s) == 0 {
				return 0
			}
			if n > limit(e)/int64(len(s)) {
				return -1
			}
			return n * int64(len(s))
		}
	case "replace":
		return func(e *Env, a []any) int64 {
			s, _ := a[0].(string)
			old, _ := a[1].(string)
			nw, _ := a[2].(string)
			count := int64(utf8.RuneCountInString(s) + 1)
			if old != "" {
				count = int64(strings.Count(s, old))
			}
			if count > 0 && int64(len(nw)) > limit(e)/count {
				return -1
			}
			return int64(len(s)) + count*int64(len(nw))
		}
	case "join":
		return func(e *Env, a []any) int64 {
			l := limit(e)
			var n int64
			sep := ""
			if len(a) > 1 {
				sep, _ = a[1].(string)
			}
			rv := reflect.ValueOf(a[0])
			if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
				return 0
			}
			for i := 0; i < rv.Len(); i++ {
				if s, ok := rv.Index(i).Interface().(string); ok {
					n += int64(len(s))
				}
				n += int64(len(sep))
				if n > l {
					return -1
				}
			}
			return n
		}
	}
	return func(e *Env, a []any) int64 { // toJSON, string
		l := limit(e)
		n := textSize(a[0], l)
		if n > l {
			return -1
		}
		return n
	}
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		return int64(x), true
	}
	rv := reflect.ValueOf(v)
	if rv.CanInt() {
		return rv.Int(), true
	}
	return 0, false
}
