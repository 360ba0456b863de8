package transport

import (
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Headers of a message that a replay published again. The event in the message
// keeps its id: only Nats-Msg-Id differs (ReplayMsgID), so that JetStream's
// duplicate window does not drop it.
const (
	// ReplayHeader carries the replay's number. An executor delivers such an event
	// again whatever it settled before (pipeline.PushReplayed), even at or below its
	// partition's settled position, which it does not move.
	ReplayHeader = "Fraiseql-Replay"
	// ReplayObserverHeader names the observer the replay is for; absent: every
	// observer. Executors run only that observer's actions for the event.
	ReplayObserverHeader = "Fraiseql-Replay-Observer"
)

// ReplayMsgID is the Nats-Msg-Id of event id published again by replay number n:
// "<id>:replay:<n>", distinct from the id itself (the first publish) and from every
// other replay's.
func ReplayMsgID(id lsn.Position, n int64) string {
	return fmt.Sprintf("%s:replay:%d", id, n)
}

// Replay describes a replay: the events of the transactions committed from From to
// To (0: up to the highest event pushed when it was asked for).
type Replay struct {
	From, To lsn.LSN
	// Observer names the observer whose actions deliver the events again ("":
	// every observer's); it travels in ReplayObserverHeader.
	Observer string
	// Only, when set, keeps the events the observer can fire for: the others are
	// not published again.
	Only func(ev *decoder.Event) bool
	// Stored is a position below which the stream holds every event (the
	// replication session's settled position): the replay covers those events
	// too, which matters after a restart, before this publisher was pushed any.
	Stored lsn.LSN
}

// replayRange is a Replay asked for: n numbers it, until is the highest event id
// pushed when it was asked for.
type replayRange struct {
	Replay
	n      int64
	until  lsn.Position
	pushed bool // until is set: events were pushed before
}

// covers reports whether the replay publishes ev again: in its range, stored
// already and, for an observer, one it can fire for.
func (rr *replayRange) covers(ev *decoder.Event) bool {
	if ev.ID.Commit < rr.From || (rr.To != 0 && ev.ID.Commit > rr.To) {
		return false
	}
	if (!rr.pushed || ev.ID.Compare(rr.until) > 0) && ev.ID.Commit >= rr.Stored {
		return false
	}
	return rr.Only == nil || rr.Only(ev)
}

// Replay makes the publisher publish again, as new messages, the events of r that
// it was pushed before (or that r.Stored says the stream holds), when the
// replication session sends them again: the caller rewinds the session to r.From
// next. Each such event goes to its partition with
// Nats-Msg-Id ReplayMsgID(id, n), ReplayHeader n and, for an observer,
// ReplayObserverHeader, in the same chain of Nats-Expected-Last-Msg-Id as every
// publish (observer_transport_replayed_total counts them once stored); the other
// events the session sends again are not published again. The range ends at the
// highest event pushed when the replay was asked for; a new Replay replaces the
// last one. It returns the replay's number n, unique among this process's replays
// and, being taken from the clock in milliseconds, among other processes'. The
// returned cancel ends the replay (when the rewind failed). Safe for concurrent use
// with Run.
func (p *Publisher) Replay(r Replay) (n int64, cancel func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n = max(time.Now().UnixMilli(), p.lastRep+1)
	p.lastRep = n
	rr := &replayRange{Replay: r, n: n, until: p.high, pushed: p.hasHigh}
	p.replay = rr
	p.held = max(p.held, r.Stored)
	return n, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.replay == rr {
			p.replay = nil
		}
	}
}

// msgID is the entry's Nats-Msg-Id.
func (e entry) msgID() string {
	if e.replay != nil {
		return ReplayMsgID(e.ev.ID, e.replay.n)
	}
	return e.ev.ID.String()
}
