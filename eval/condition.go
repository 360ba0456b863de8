package eval

import "fmt"

// Condition is a compiled observer condition. It is immutable and safe for
// concurrent use (each call needs its own Env).
type Condition struct {
	src  string
	prog *program
}

// CompileCondition compiles the condition src (see the package documentation for
// the language). A compile error is an *Error whose Line and Column point into src.
func CompileCondition(src string, opts Options) (*Condition, error) {
	p, err := compile(src, opts, true)
	if err != nil {
		return nil, err
	}
	return &Condition{src: src, prog: p}, nil
}

// Eval evaluates the condition for env's event. Any failure (a missing field, an
// unavailable value, a comparison of a string with a number, a result that is not a
// bool) is an *Error, never a silent false.
func (c *Condition) Eval(env *Env) (bool, error) {
	out, err := c.prog.run(env)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, &Error{Line: 1, Column: 1, Msg: fmt.Sprintf("condition is %s, not bool", typeName(out))}
	}
	return b, nil
}

// Columns returns the columns the condition reads by a constant name, in source
// order (a name read twice is listed twice). A check against the table's columns
// finds names that can never match, such as a typo.
func (c *Condition) Columns() []ColumnRef { return c.prog.cols }

// String returns the condition's source.
func (c *Condition) String() string { return c.src }
