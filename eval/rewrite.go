package eval

import (
	"fmt"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
)

// The rewrite turns a parsed expression into one that runs on an *Env with the
// package's semantics, before expr type-checks and compiles it:
//
//	status                       → $path($env, data, 0, false, "status")
//	new.customer?.email          → $path($env, new, 2, false, "customer", "email")
//	x.y ?? 'none'                → $path($env, data, 0, true, "x", "y") ?? 'none'
//	(new ?? old).total           → $get(new ?? old, 0, false, "total")
//	a == b, a < b, a in b        → $eq(a, b), $lt(a, b), $in(a, b)
//	a == 'x', a != nil           unchanged (expr's equality is ours there)
//	a * b, abs(a)                → $num(a) * $num(b), abs($num(a))
//	has_field('f')               → has_field($env, 'f')
//
// It needs each node's parent and the variables in scope (`let`), which a
// post-order ast.Visitor given to expr.Patch does not provide, so it walks the tree
// itself. It also rejects what expr would accept but we do not: unknown functions,
// method calls, $env, and deep nesting.

// maxDepth bounds the nesting of an expression (a chain a && b && c counts once).
const maxDepth = 64

type rewriter struct {
	funcs map[string]bool // callable by users besides the helpers
	vars  []string        // let variables in scope
	err   *file.Error
	cols  []ColumnRef // columns of the row the expression reads, in source order
}

// ColumnRef is a column an expression reads by a constant name: the first key of a
// path into a row (`status`, `new.total`, `data.customer.email`, `changes.status`)
// or the column argument of has_field and the field_changed helpers.
type ColumnRef struct {
	Name         string
	Line, Column int // position in the expression, from 1
	at           file.Location
}

func (w *rewriter) column(at ast.Node, name string) {
	w.cols = append(w.cols, ColumnRef{Name: name, at: at.Location()})
}

func (w *rewriter) fail(n ast.Node, format string, args ...any) {
	if w.err == nil {
		w.err = &file.Error{Location: n.Location(), Message: fmt.Sprintf(format, args...)}
	}
}

func (w *rewriter) isVar(name string) bool {
	for _, v := range w.vars {
		if v == name {
			return true
		}
	}
	return false
}

func call(at ast.Node, fn string, args ...ast.Node) ast.Node {
	c := &ast.CallNode{Callee: &ast.IdentifierNode{Value: fn}, Arguments: args}
	c.SetLocation(at.Location())
	c.Callee.SetLocation(at.Location())
	return c
}

func envNode() ast.Node { return &ast.IdentifierNode{Value: "$env"} }

func isLiteral(n ast.Node) bool {
	switch n.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.StringNode, *ast.BoolNode, *ast.NilNode:
		return true
	}
	return false
}

// toFloatArg wraps *p in $num unless it is a literal.
func toFloatArg(p *ast.Node) {
	if !isLiteral(*p) {
		*p = call(*p, fnNum, *p)
	}
}

var compareFns = map[string]string{"==": fnEq, "!=": fnNe, "<": fnLt, "<=": fnLe, ">": fnGt, ">=": fnGe}

var arithmetic = map[string]bool{"+": true, "-": true, "*": true, "/": true, "%": true, "**": true, "^": true}

// numericBuiltins are expr built-ins that only take numbers (or lists of numbers).
var numericBuiltins = map[string]bool{
	"abs": true, "ceil": true, "floor": true, "round": true, "int": true, "float": true,
	"max": true, "min": true, "sum": true, "mean": true, "median": true,
}

// walk rewrites *p. lenient marks the left side of ??.
func (w *rewriter) walk(p *ast.Node, depth int, lenient bool) {
	if w.err != nil {
		return
	}
	if depth > maxDepth {
		w.fail(*p, "expression nested too deeply (more than %d levels)", maxDepth)
		return
	}
	switch n := (*p).(type) {
	case *ast.NilNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.StringNode,
		*ast.BytesNode, *ast.ConstantNode, *ast.PointerNode:
	case *ast.IdentifierNode:
		switch {
		case n.Value == "$env":
			w.fail(n, "$env is not available")
		case !w.isVar(n.Value):
			w.path(p, n, nil, 0, lenient)
		}
	case *ast.MemberNode, *ast.ChainNode:
		w.chain(p, depth, lenient)
	case *ast.BinaryNode:
		w.binary(p, n, depth)
	case *ast.UnaryNode:
		w.walk(&n.Node, depth+1, false)
		if n.Operator == "-" || n.Operator == "+" {
			toFloatArg(&n.Node)
		}
	case *ast.CallNode:
		w.call(p, n, depth)
	case *ast.BuiltinNode:
		for i := range n.Arguments {
			w.walk(&n.Arguments[i], depth+1, false)
			if !numericBuiltins[n.Name] {
				continue
			}
			if pn, ok := n.Arguments[i].(*ast.PredicateNode); ok {
				toFloatArg(&pn.Node)
			} else {
				toFloatArg(&n.Arguments[i])
			}
		}
		w.budget(p, n)
	case *ast.PredicateNode:
		w.walk(&n.Node, depth+1, false)
	case *ast.ConditionalNode:
		w.walk(&n.Cond, depth+1, false)
		w.walk(&n.Exp1, depth+1, false)
		w.walk(&n.Exp2, depth+1, false)
	case *ast.ArrayNode:
		for i := range n.Nodes {
			w.walk(&n.Nodes[i], depth+1, false)
		}
	case *ast.MapNode:
		for i := range n.Pairs {
			w.walk(&n.Pairs[i], depth+1, false)
		}
	case *ast.PairNode:
		if _, ok := n.Key.(*ast.StringNode); !ok {
			w.walk(&n.Key, depth+1, false)
		}
		w.walk(&n.Value, depth+1, false)
	case *ast.SliceNode:
		w.walk(&n.Node, depth+1, false)
		if n.From != nil {
			w.walk(&n.From, depth+1, false)
		}
		if n.To != nil {
			w.walk(&n.To, depth+1, false)
		}
	case *ast.SequenceNode:
		for i := range n.Nodes {
			w.walk(&n.Nodes[i], depth+1, false)
		}
	case *ast.VariableDeclaratorNode:
		w.walk(&n.Value, depth+1, false)
		w.vars = append(w.vars, n.Name)
		w.walk(&n.Expr, depth+1, false)
		w.vars = w.vars[:len(w.vars)-1]
	default:
		w.fail(n, "unsupported expression %T", n)
	}
}

func (w *rewriter) binary(p *ast.Node, n *ast.BinaryNode, depth int) {
	left := depth + 1
	if l, ok := n.Left.(*ast.BinaryNode); ok && l.Operator == n.Operator {
		left = depth // long a && b && c chains are not deep nesting
	}
	switch {
	case n.Operator == "??":
		w.walk(&n.Left, left, isPath(n.Left))
		w.walk(&n.Right, depth+1, false)
		return
	}
	w.walk(&n.Left, left, false)
	w.walk(&n.Right, depth+1, false)
	switch {
	case (n.Operator == "==" || n.Operator == "!=") && (plainLiteral(n.Left) || plainLiteral(n.Right)):
		// expr's own equality with a string, bool or nil literal is already ours.
	case compareFns[n.Operator] != "":
		*p = call(n, compareFns[n.Operator], n.Left, n.Right)
	case n.Operator == "in":
		*p = call(n, fnIn, n.Left, n.Right)
	case arithmetic[n.Operator]:
		toFloatArg(&n.Left)
		toFloatArg(&n.Right)
		if n.Operator == "+" && !(isLiteral(n.Left) && isLiteral(n.Right)) {
			*p = call(n, fnAcct, envNode(), n) // string concatenation is counted
		}
	}
}

// budget makes a built-in call count against the evaluation's Budget: each iteration
// of a predicate is a step, a built-in whose result can outgrow its arguments is
// replaced by a size-checked one, and other results that allocate are counted.
func (w *rewriter) budget(p *ast.Node, n *ast.BuiltinNode) {
	for _, a := range n.Arguments {
		if pn, ok := a.(*ast.PredicateNode); ok {
			pn.Node = call(pn.Node, fnStep, envNode(), pn.Node)
		}
	}
	if arities, ok := guardedBuiltins[n.Name]; ok {
		for _, k := range arities {
			if k == len(n.Arguments) {
				*p = call(n, guardName(n.Name), append([]ast.Node{envNode()}, n.Arguments...)...)
				return
			}
		}
		return
	}
	switch {
	case stringBuiltins[n.Name]:
		*p = call(n, fnAcctString, envNode(), n)
	case countedBuiltins[n.Name]:
		*p = call(n, fnAcct, envNode(), n)
	}
}

// plainLiteral reports whether n is a string, bool or nil literal.
func plainLiteral(n ast.Node) bool {
	switch n.(type) {
	case *ast.StringNode, *ast.BoolNode, *ast.NilNode:
		return true
	}
	return false
}

// isPath reports whether n is a name or member access, which ?? makes lenient.
func isPath(n ast.Node) bool {
	switch n.(type) {
	case *ast.IdentifierNode, *ast.MemberNode, *ast.ChainNode:
		return true
	}
	return false
}

func (w *rewriter) call(p *ast.Node, n *ast.CallNode, depth int) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok {
		w.fail(n.Callee, "method calls are not supported")
		return
	}
	name := id.Value
	_, helper := helpers[name]
	if w.isVar(name) || !helper && name != "numeric" && !w.funcs[name] {
		w.fail(n.Callee, "unknown function %s", name)
		return
	}
	for i := range n.Arguments {
		w.walk(&n.Arguments[i], depth+1, false)
	}
	if arity, ok := helpers[name]; ok {
		if len(n.Arguments) != arity {
			w.fail(n, "%s takes %d argument(s), not %d", name, arity, len(n.Arguments))
			return
		}
		if col, ok := n.Arguments[0].(*ast.StringNode); ok {
			w.column(col, col.Value)
		}
		n.Arguments = append([]ast.Node{envNode()}, n.Arguments...)
		return
	}
	if name != "numeric" {
		return
	}
	if len(n.Arguments) != 1 {
		w.fail(n, "numeric takes 1 argument, not %d", len(n.Arguments))
		return
	}
	if lit, ok := n.Arguments[0].(*ast.StringNode); ok {
		// A constant: check it now and compute it once.
		v, err := ParseNumeric(lit.Value)
		if err != nil {
			w.fail(lit, "%v", err)
			return
		}
		c := &ast.ConstantNode{Value: v}
		c.SetLocation(n.Location())
		*p = c
	}
}

// chain rewrites a member access chain a.b?.c[d] (MemberNodes, possibly wrapped in
// ChainNodes) into one $path or $get call.
func (w *rewriter) chain(p *ast.Node, depth int, lenient bool) {
	var keys []ast.Node
	var optional []bool
	n := *p
loop:
	for {
		switch x := n.(type) {
		case *ast.ChainNode:
			n = x.Node
		case *ast.MemberNode:
			keys = append(keys, x.Property)
			optional = append(optional, x.Optional)
			n = x.Node
		default:
			break loop
		}
	}
	// Collected outermost first; paths read innermost first.
	for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
		keys[i], keys[j] = keys[j], keys[i]
		optional[i], optional[j] = optional[j], optional[i]
	}
	var opt uint64
	for i, o := range optional {
		if o && i < 63 {
			opt |= 1 << i
		}
	}
	for i := range keys {
		if _, ok := keys[i].(*ast.StringNode); !ok {
			w.walk(&keys[i], depth+1, false)
		}
	}
	if id, ok := n.(*ast.IdentifierNode); ok && id.Value != "$env" && !w.isVar(id.Value) {
		w.path(p, id, keys, opt, lenient)
		return
	}
	at := n // errors point at the start of the path
	w.walk(&n, depth+1, false)
	args := append([]ast.Node{n, intNode(at, int(opt)), boolNode(at, lenient)}, keys...)
	*p = call(at, fnGet, args...)
}

// path replaces *p by a $path call for name id followed by keys.
func (w *rewriter) path(p *ast.Node, id *ast.IdentifierNode, keys []ast.Node, opt uint64, lenient bool) {
	root, ok := lookupRoot(id.Value)
	if !ok {
		// A bare name is a column of data.
		root = rootData
		name := &ast.StringNode{Value: id.Value}
		name.SetLocation(id.Location())
		keys = append([]ast.Node{name}, keys...)
		opt <<= 1
	}
	if root.isRow() || root == rootChanges {
		if len(keys) > 0 {
			if col, ok := keys[0].(*ast.StringNode); ok {
				w.column(col, col.Value)
			}
		}
	}
	args := append([]ast.Node{envNode(), intNode(id, int(root)), intNode(id, int(opt)), boolNode(id, lenient)}, keys...)
	*p = call(id, fnPath, args...) // errors point at the start of the path
}

func intNode(at ast.Node, v int) ast.Node {
	n := &ast.IntegerNode{Value: v}
	n.SetLocation(at.Location())
	return n
}

func boolNode(at ast.Node, v bool) ast.Node {
	n := &ast.BoolNode{Value: v}
	n.SetLocation(at.Location())
	return n
}
