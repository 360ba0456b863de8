package main

import (
	"errors"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/service"
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
func compileCondition(co *configs.Observer, rowCache bool, budget eval.Budget) (condition, error) {
	c, err := eval.CompileCondition(co.Condition, eval.Options{Budget: budget})
	if err != nil {
		return condition{}, &configs.Error{Pos: service.ExprPos(co.ConditionPos, err), Msg: "observer " + co.Name + ": condition: " + exprMsg(err)}
	}
	return condition{c: c, meta: eval.Meta{Entity: observerEntity(co), RowCache: rowCache}}, nil
}

// evalBudget is the configuration's evaluation section as an eval.Budget.
func evalBudget(cfg *configs.Config) eval.Budget {
	e := cfg.Evaluation
	return eval.Budget{MaxSteps: e.MaxSteps, Timeout: e.Timeout, MaxMemoryBytes: int64(e.MaxMemoryBytes), MaxRenderedBytes: int64(e.MaxRenderedBytes)}
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
