package pipeline

import (
	"fmt"
	"sync/atomic"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// replayRange makes an action deliver again the events it already settled whose
// transaction commits in [from, to]; until is the highest event id routed when the
// replay was asked for: past it, the range has nothing more to do.
type replayRange struct {
	from, to lsn.LSN // to == 0: up to until
	until    lsn.Position
}

func (rr *replayRange) covers(ev *decoder.Event) bool {
	if ev.ID.Commit < rr.from || (rr.to != 0 && ev.ID.Commit > rr.to) {
		return false
	}
	return ev.ID.Compare(rr.until) <= 0
}

// replaying reports whether ev is to be delivered again by the action, bypassing the
// checkpoint and dedup layers.
func (r *runner) replaying(ev *decoder.Event) bool {
	rr := r.replay.Load()
	return rr != nil && rr.covers(ev)
}

// Replay makes the actions of the named observer (every observer when it is "")
// deliver again the events whose transactions commit between from and to (to 0:
// everything routed so far), with their original ids, as the stream sends them
// again. The caller rewinds the stream to from; events of other actions in that
// range are recognised as settled and skipped. It returns the ids of the actions
// concerned. Safe for concurrent use with Run.
func (p *Pipeline) Replay(observer string, from, to lsn.LSN) ([]string, error) {
	if to != 0 && to < from {
		return nil, fmt.Errorf("replay: --to-lsn %s is before --from-lsn %s", to, from)
	}
	p.inMu.Lock()
	until := p.routedMax
	p.inMu.Unlock()
	var ids []string
	for _, r := range p.runners {
		if observer == "" || r.a.observer.Name == observer {
			u := until
			// After a restart nothing may have been routed yet: what the action settled
			// before (its checkpoint) is history to deliver again too.
			if acked, ok := r.wm.Acked(); ok && acked.Compare(u) > 0 {
				u = acked
			}
			r.replay.Store(&replayRange{from: from, to: to, until: u})
			ids = append(ids, r.a.ID)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("replay: no observer named %q", observer)
	}
	return ids, nil
}

// replayRangeOf is the type of runner.replay.
type replayRangeOf = atomic.Pointer[replayRange]
