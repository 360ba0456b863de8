package main

import (
	"errors"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/service"
)

// Router's budget: what the router may spend on one condition before it leaves the
// condition to the actions' workers (pipeline.RouterCondition), so that one costly
// evaluation does not hold back the routing of other rows. Far above what a usual
// condition needs (about a microsecond, a few steps).
const (
	routerMaxSteps = 10_000
	routerTimeout  = time.Millisecond
)

// condition adapts a compiled eval.Condition to pipeline.RouterCondition: quick is
// the same expression compiled with the router's budget.
type condition struct {
	c, quick *eval.Condition
	meta     eval.Meta
}

// Match evaluates the condition with the configured budget (evaluation.*).
func (c condition) Match(ev *decoder.Event) (bool, error) {
	return c.c.Eval(eval.NewEnv(ev, c.meta))
}

// TryMatch evaluates the condition within the router's budget: done is false when
// that ran out, and Match decides later.
func (c condition) TryMatch(ev *decoder.Event) (ok, done bool, err error) {
	if c.quick == nil {
		return false, false, nil
	}
	ok, err = c.quick.Eval(eval.NewEnv(ev, c.meta))
	if errors.Is(err, eval.ErrBudget) {
		return false, false, nil
	}
	return ok, true, err
}

// routerBudget is b capped at the router's budget (steps and time; memory as b).
func routerBudget(b eval.Budget) eval.Budget {
	if b.MaxSteps <= 0 || b.MaxSteps > routerMaxSteps {
		b.MaxSteps = routerMaxSteps
	}
	if b.Timeout <= 0 || b.Timeout > routerTimeout {
		b.Timeout = routerTimeout
	}
	return b
}

// compileCondition compiles an observer's condition, reporting a compile error at
// its file:line:column (the expression's own position added to the condition's).
func compileCondition(co *configs.Observer, rowCache bool, budget eval.Budget) (condition, error) {
	c, err := eval.CompileCondition(co.Condition, eval.Options{Budget: budget})
	if err != nil {
		return condition{}, &configs.Error{Pos: service.ExprPos(co.ConditionPos, err), Msg: "observer " + co.Name + ": condition: " + exprMsg(err)}
	}
	// An expression that cannot even compile within the router's budget (a constant
	// list too long for it) is always left to the workers.
	quick, _ := eval.CompileCondition(co.Condition, eval.Options{Budget: routerBudget(budget)})
	return condition{c: c, quick: quick, meta: eval.Meta{Entity: observerEntity(co), RowCache: rowCache}}, nil
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
