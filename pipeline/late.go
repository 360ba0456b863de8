package pipeline

import (
	"fmt"
	"sync"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// lateCond is an observer's condition for one event that the router left undecided
// (RouterCondition.TryMatch ran out of its budget): the first of the observer's
// actions whose worker reaches the event evaluates it with the full budget, the
// others take that verdict. Safe for concurrent use.
type lateCond struct {
	o       *Observer
	verdict int      // index of the observer's verdict in the event's debug record
	ref     debugRef // the event's debug record (set before the event is enqueued)

	once sync.Once
	ok   bool
	err  error // a *ConditionError
}

// eval evaluates the condition once for ev and returns its verdict.
func (l *lateCond) eval(p *Pipeline, ev *decoder.Event) (bool, error) {
	l.once.Do(func() {
		ok, err := matchFull(l.o, ev)
		switch {
		case err != nil:
			p.m.conditionErrors.Inc()
			l.err = &ConditionError{Observer: l.o.Name, Err: err}
			red := RedactError(err)
			p.debug.setVerdict(l.ref, l.verdict, verdictError, red)
			p.log.Warn().Str("observer", l.o.Name).Str("event_id", ev.ID.String()).
				Str("table", ev.Schema+"."+ev.Table).Str("error", red).
				Msg("condition could not be evaluated; the event fails for the observer's actions (on_failure)")
		case ok:
			p.m.matched.Inc()
			l.ok = true
			p.debug.setVerdict(l.ref, l.verdict, verdictTrue, "")
		default:
			p.debug.setVerdict(l.ref, l.verdict, verdictFalse, "")
		}
	})
	return l.ok, l.err
}

// matchFull evaluates o's condition with its full budget, off the router. A panic of
// the condition is its error.
func matchFull(o *Observer, ev *decoder.Event) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			ok, err = false, fmt.Errorf("condition panicked: %v", r)
		}
	}()
	return o.Condition.Match(ev)
}

// decide evaluates the late condition of kq's head entry e on the action's worker:
// it returns true when e is to be delivered (the condition held) or failed (it could
// not be evaluated: e.fail is set), false when the condition did not hold and e was
// settled without a delivery.
func (r *runner) decide(kq *keyQueue, e *entry) bool {
	ok, err := e.late.eval(r.p, e.it.ev)
	e.late = nil
	switch {
	case err != nil:
		e.fail = err
		return true
	case ok:
		return true
	}
	r.p.debug.setAction(e.dbg, statusNotMatch, 0, nil, 0)
	r.settle(kq, e)
	return false
}
