package pipeline

import (
	"errors"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// TestDebugRingReusesSlots: the history keeps the newest events; an action's state
// update for an event whose slot the ring has reused since changes nothing, and
// recording an event allocates nothing once the ring has gone round (the records
// are built only when asked for).
func TestDebugRingReusesSlots(t *testing.T) {
	r := newDebugRing(2)
	o := &Observer{Name: "o", Actions: []*Action{{ID: "o.a", Type: "file"}}}
	ev := func(ord uint32) *decoder.Event {
		return &decoder.Event{ID: lsn.Position{Commit: 0x3E8, Ord: ord}, Schema: "public", Table: "t", Op: decoder.OpInsert}
	}
	verdicts := []debugVerdict{{o: o, nActions: 1}}
	states := []debugState{{a: o.Actions[0], status: statusPending}}
	first := r.add(ev(1), time.Now(), verdicts, states)
	second := r.add(ev(2), time.Now(), verdicts, states)
	r.setAction(second, statusDelivered, 1, nil, time.Millisecond)
	r.add(ev(3), time.Now(), verdicts, states) // reuses the first event's slot
	r.setAction(first, statusDLQ, 3, errors.New("late"), time.Second)

	got := r.recent(0)
	if len(got) != 2 || got[0].ID != "0/3E8:3" || got[1].ID != "0/3E8:2" {
		t.Fatalf("unexpected history %+v; want 0/3E8:3, 0/3E8:2", got)
	}
	if a := got[0].Observers[0].Actions[0]; a.Status != statusPending || a.Attempts != 0 || a.LastError != "" {
		t.Fatalf("a stale update changed the event in the reused slot: %+v", a)
	}
	if a := got[1].Observers[0].Actions[0]; a.Status != statusDelivered || a.Attempts != 1 || a.LatencyMS != 1 {
		t.Fatalf("unexpected state of the delivered event: %+v", a)
	}
	if _, ok := r.find(lsn.Position{Commit: 0x3E8, Ord: 1}); ok {
		t.Fatalf("the overwritten event is still found")
	}
	if d, ok := r.find(lsn.Position{Commit: 0x3E8, Ord: 2}); !ok || !d.Observers[0].Matched {
		t.Fatalf("unexpected find result %+v, %v", d, ok)
	}
	e := ev(4)
	if n := testing.AllocsPerRun(100, func() { r.add(e, time.Time{}, verdicts, states) }); n != 0 {
		t.Fatalf("recording an event allocates %v times; want 0", n)
	}
}
