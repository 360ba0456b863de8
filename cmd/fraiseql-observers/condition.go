package main

import (
	"errors"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
)

// condition adapts a compiled eval.Condition to pipeline.Condition.
type condition struct {
	c    *eval.Condition
	meta eval.Meta
}

func (c condition) Match(ev *decoder.Event) (bool, error) {
	return c.c.Eval(eval.NewEnv(ev, c.meta))
}

// compileCondition compiles an observer's condition, reporting a compile error at
// its file:line:column (the expression's own position added to the condition's).
func compileCondition(co *configs.Observer, rowCache bool) (condition, error) {
	c, err := eval.CompileCondition(co.Condition, eval.Options{})
	if err != nil {
		return condition{}, &configs.Error{Pos: exprPos(co.ConditionPos, err), Msg: "observer " + co.Name + ": condition: " + exprMsg(err)}
	}
	return condition{c: c, meta: eval.Meta{Entity: observerEntity(co), RowCache: rowCache}}, nil
}

// exprPos moves pos, where the expression's text starts in the file, to where an
// expression error points within the expression. A block scalar's lines share the
// first line's indentation; a quoted or plain scalar continued on further lines is
// only approximated there.
func exprPos(pos configs.Pos, err error) configs.Pos {
	var ee *eval.Error
	if !errors.As(err, &ee) {
		return pos
	}
	pos.Line += max(ee.Line, 1) - 1
	pos.Column += ee.Column - 1
	return pos
}

func exprMsg(err error) string {
	var ee *eval.Error
	if errors.As(err, &ee) {
		return ee.Msg
	}
	return err.Error()
}

// String returns the condition's source, for /debug/events.
func (c condition) String() string { return c.c.String() }
