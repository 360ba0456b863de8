package pipeline

import (
	"testing"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// TestPushReplayed: events pushed again with PushReplayed are delivered again
// although the deduplication layer and the checkpoints say they were settled, to
// the named observer's actions only (to every observer's without a name).
func TestPushReplayed(t *testing.T) {
	recO, recP := newRecorder(), newRecorder()
	d, err := NewDedup(1000)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	o := observer(recO, 2, RetryPolicy{}, FailureLog)
	p := observer(recP, 2, RetryPolicy{}, FailureLog)
	p.Name, p.Actions[0].ID = "p", "p.0"
	h := start(t, Options{Dedup: d, Start: map[string]lsn.Position{"o.0": {Commit: 1000, Ord: 10}},
		Observers: []*Observer{o, p}})
	evs := h.push(2, 10, 10)
	h.waitAcked(2*1000 + 100)
	d.Wait()
	if len(recO.all) != 10 || len(recP.all) != 20 {
		t.Fatalf("unexpected first deliveries; got o %d, p %d; want 10 (after its checkpoint), 20", len(recO.all), len(recP.all))
	}
	again := func(observer string, end lsn.LSN) {
		t.Helper()
		var cps []*decoder.Event
		var tickets []lsn.Ticket
		for _, ev := range evs {
			cps = append(cps, &decoder.Event{ID: ev.ID, Schema: ev.Schema, Table: ev.Table, Op: ev.Op, Key: ev.Key})
			tickets = append(tickets, h.wm.Dispatch(ev.ID.Commit))
		}
		h.p.PushReplayed(observer, cps, tickets)
		h.wm.Ack(h.wm.Dispatch(end))
		h.waitAcked(end)
	}
	again("o", 3000)
	if len(recO.all) != 30 || len(recP.all) != 20 {
		t.Fatalf("unexpected deliveries after a replay for o; got o %d, p %d; want 30, 20", len(recO.all), len(recP.all))
	}
	again("", 4000)
	if len(recO.all) != 50 || len(recP.all) != 40 {
		t.Fatalf("unexpected deliveries after a replay for every observer; got o %d, p %d; want 50, 40", len(recO.all), len(recP.all))
	}
	again("nobody", 5000) // settled, delivered by no action
	if len(recO.all) != 50 || len(recP.all) != 40 {
		t.Fatalf("unexpected deliveries after a replay for an unknown observer; got o %d, p %d; want 50, 40", len(recO.all), len(recP.all))
	}
}
