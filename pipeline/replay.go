package pipeline

import (
	"fmt"
	"slices"
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

// replayPush marks a batch that a replay sends again (PushReplayed).
type replayPush struct {
	observer string // "" for every observer
}

// PushReplayed is Push for events that a replay sends again from elsewhere (the
// transport's reader re-published them): they bypass the checkpoint and
// deduplication layers and the row cache, like the events of a Replay range, and when
// observer is not "" only that observer's actions handle them (its condition still
// applies). Safe for concurrent use with Run.
func (p *Pipeline) PushReplayed(observer string, evs []*decoder.Event, tickets []lsn.Ticket) {
	p.push(evs, tickets, &replayPush{observer: observer})
}

// scope keeps, of the observers matched for a replayed event, the one the replay is
// for (all when it is for every observer). A replay for an observer this pipeline
// does not have delivers nothing: it is logged.
func (rp *replayPush) scope(p *Pipeline, ev *decoder.Event, matched []*Observer) []*Observer {
	if rp.observer == "" {
		return matched
	}
	kept := matched[:0]
	for _, o := range matched {
		if o.Name == rp.observer {
			kept = append(kept, o)
		}
	}
	if len(kept) == 0 && !slices.ContainsFunc(p.opts.Observers, func(o *Observer) bool { return o.Name == rp.observer }) {
		p.log.Warn().Str("observer", rp.observer).Str("event_id", ev.ID.String()).
			Msg("replayed event for an observer this process does not have: not delivered (the processes' configurations differ)")
	}
	return kept
}
