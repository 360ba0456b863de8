package eval

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// MaxExprLen is the longest accepted condition or placeholder expression, in bytes.
const MaxExprLen = 4 << 10

// Options configures compilation. The zero value means no extra functions.
type Options struct {
	// Functions are extra functions expressions may call by name. They receive values
	// as the package documentation describes (string, bool, nil, int64, Numeric,
	// []any, map[string]any, ...), must not modify them, and must be safe for
	// concurrent use. A name may not be one of the helpers.
	Functions map[string]func(args ...any) (any, error)
	// Budget bounds each evaluation; zero fields mean the defaults.
	Budget Budget
}

// internalFunctions are registered with every program: the helpers and the
// functions the rewrite calls.
var internalFunctions = sync.OnceValue(func() []*builtin.Function {
	cmp := reflect.TypeFor[func(any, any) bool]()
	fns := []*builtin.Function{
		{Name: fnPath, Func: callPath, Types: []reflect.Type{reflect.TypeFor[func(...any) any]()}},
		{Name: fnGet, Func: callGet, Types: []reflect.Type{reflect.TypeFor[func(...any) any]()}},
		{Name: fnEq, Func: func(a ...any) (any, error) { return equal(a[0], a[1]), nil }, Types: []reflect.Type{cmp}},
		{Name: fnNe, Func: func(a ...any) (any, error) { return !equal(a[0], a[1]), nil }, Types: []reflect.Type{cmp}},
		{Name: fnLt, Func: callCompare("<"), Types: []reflect.Type{cmp}},
		{Name: fnLe, Func: callCompare("<="), Types: []reflect.Type{cmp}},
		{Name: fnGt, Func: callCompare(">"), Types: []reflect.Type{cmp}},
		{Name: fnGe, Func: callCompare(">="), Types: []reflect.Type{cmp}},
		{Name: fnIn, Func: func(a ...any) (any, error) { return in(a[0], a[1]) }, Types: []reflect.Type{cmp}},
		{Name: fnNum, Func: func(a ...any) (any, error) { return toFloat(a[0]), nil }, Types: []reflect.Type{reflect.TypeFor[func(any) any]()}},
		{Name: "numeric", Func: callNumeric, Types: []reflect.Type{reflect.TypeFor[func(string) Numeric]()}},
	}
	for name, arity := range helpers {
		t := reflect.TypeFor[func(any, string) bool]()
		if arity == 2 {
			t = reflect.TypeFor[func(any, string, any) bool]()
		}
		fns = append(fns, &builtin.Function{
			Name:  name,
			Func:  func(a ...any) (any, error) { return callHelper(name, a) },
			Types: []reflect.Type{t},
		})
	}
	for _, f := range fns {
		f.Func = own(f.Func)
	}
	// Not wrapped: their errors come from expr built-ins, or are budget errors.
	fns = append(fns, guardFunctions()...)
	return fns
})

// program is a compiled expression.
type program struct {
	p *vm.Program
	// ref is set when the expression is a plain column or row reference, which
	// templates render from the row's JSON without running the program.
	ref *colRef
	// cols are the columns the expression reads by name.
	cols []ColumnRef
	// budget bounds each run (defaults applied).
	budget Budget
}

// colRef is a plain reference: a column with constant keys (`name`, `new.total`,
// `data.customer.email`, `items[0]`) or a whole row (`new`, `data`).
type colRef struct {
	root rootID
	row  bool
	col  string
	keys []any // string or int >= 0
}

// compile parses, rewrites and compiles one expression. asBool makes a result
// that is known at compile time not to be a bool an error.
func compile(src string, opts Options, asBool bool) (*program, error) {
	if len(src) > MaxExprLen {
		return nil, &Error{Line: 1, Column: 1, Msg: fmt.Sprintf("expression longer than %d bytes", MaxExprLen)}
	}
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Line: 1, Column: 1, Msg: "empty expression"}
	}
	config := conf.CreateNew()
	for _, f := range internalFunctions() {
		config.Functions[f.Name] = f
	}
	user := make(map[string]bool, len(opts.Functions))
	for name, fn := range opts.Functions {
		if _, ok := config.Functions[name]; ok || strings.HasPrefix(name, "$") {
			return nil, &Error{Line: 1, Column: 1, Msg: fmt.Sprintf("function %s is reserved", name)}
		}
		config.Functions[name] = &builtin.Function{Name: name, Func: fn}
		user[name] = true
	}
	tree, err := parser.ParseWithConfig(src, config)
	if err != nil {
		e := toError(err)
		if strings.HasPrefix(e.Msg, "invalid integer literal") {
			e.Msg += " (write numeric('…') for an exact number beyond int64)"
		}
		return nil, e
	}
	ref := columnRef(tree.Node)
	w := rewriter{funcs: user}
	w.walk(&tree.Node, 0, false)
	if w.err != nil {
		return nil, toError(w.err.Bind(tree.Source))
	}
	t, err := checker.Check(tree, config)
	if err != nil {
		return nil, toError(err)
	}
	if asBool && t.Kind() != reflect.Interface && t.Kind() != reflect.Bool {
		return nil, &Error{Line: 1, Column: 1, Msg: fmt.Sprintf("condition is %s, not bool", kindName(t))}
	}
	if err := optimizer.Optimize(&tree.Node, config); err != nil {
		return nil, toError(err)
	}
	p, err := compiler.Compile(tree, config)
	if err != nil {
		return nil, toError(err)
	}
	for i := range w.cols {
		e := (&file.Error{Location: w.cols[i].at}).Bind(tree.Source)
		w.cols[i].Line, w.cols[i].Column = max(e.Line, 1), e.Column+1
	}
	return &program{p: p, ref: ref, cols: w.cols, budget: opts.Budget.withDefaults()}, nil
}

// columnRef recognises the plain references templates render from raw JSON.
func columnRef(n ast.Node) *colRef {
	var keys []any
	for {
		m, ok := n.(*ast.MemberNode)
		if !ok {
			break
		}
		if m.Optional || m.Method {
			return nil
		}
		switch p := m.Property.(type) {
		case *ast.StringNode:
			keys = append(keys, p.Value)
		case *ast.IntegerNode:
			if p.Value < 0 {
				return nil
			}
			keys = append(keys, p.Value)
		default:
			return nil
		}
		n = m.Node
	}
	id, ok := n.(*ast.IdentifierNode)
	if !ok {
		return nil
	}
	slices.Reverse(keys)
	r, isRoot := lookupRoot(id.Value)
	switch {
	case !isRoot:
		return &colRef{root: rootData, col: id.Value, keys: keys}
	case !r.isRow():
		return nil
	case len(keys) == 0:
		return &colRef{root: r, row: true}
	}
	col, ok := keys[0].(string)
	if !ok {
		return nil
	}
	return &colRef{root: r, col: col, keys: keys[1:]}
}

var vmPool = sync.Pool{New: func() any { return new(vm.VM) }}

// run runs p on env.
func (p *program) run(env *Env) (any, error) {
	if env == nil || env.ev == nil {
		return nil, &Error{Line: 1, Column: 1, Msg: "no event environment"}
	}
	if env.begin(&p.budget) {
		defer env.end()
	}
	m := vmPool.Get().(*vm.VM)
	// expr counts the elements of the lists it builds (ranges, literals, sort)
	// against MemoryBudget: one element is at least 16 bytes.
	m.MemoryBudget = uint(max(p.budget.MaxMemoryBytes/16, 1024))
	out, err := m.Run(p.p, env)
	// Drop references to the event's values before pooling the VM.
	clear(m.Stack[:cap(m.Stack)])
	clear(m.Variables)
	vmPool.Put(m)
	if err != nil {
		e := toError(err)
		if e.Err == nil && strings.HasPrefix(e.Msg, "memory budget exceeded") {
			e.Err = ErrBudget
			e.Msg = fmt.Sprintf("%v: lists of more than %d elements (evaluation.max_memory_bytes)", ErrBudget, m.MemoryBudget)
		}
		e.run = mayQuoteValues(e.Err)
		return nil, e
	}
	return out, nil
}

func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map:
		return "object"
	}
	return t.String()
}
