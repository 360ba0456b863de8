package pipeline

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// readEvents builds n snapshot rows of public.t with ids {base, 1..n}, keys from 0.
func readEvents(rel *decoder.Relation, base lsn.LSN, n int) []*decoder.Event {
	evs := make([]*decoder.Event, n)
	for i := range evs {
		evs[i] = &decoder.Event{ID: lsn.Position{Commit: base, Ord: uint32(i + 1)}, LSN: base, Schema: "public", Table: "t",
			Op: decoder.OpRead, Relation: rel,
			Key: &decoder.Row{Names: []string{"id"}, Values: []json.RawMessage{json.RawMessage(strconv.Itoa(i))}}}
	}
	return evs
}

// TestReadNeverSkippedByPosition checks that snapshot rows whose ids are below the
// action's checkpoint and below what it has settled since are still delivered, and
// that they do not move the checkpoint.
func TestReadNeverSkippedByPosition(t *testing.T) {
	rec := newRecorder()
	o := observer(rec, 2, RetryPolicy{}, FailureLog)
	o.Ops = append(o.Ops, decoder.OpRead)
	d, err := NewDedup(1000)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := start(t, Options{Dedup: d, Start: map[string]lsn.Position{"o.0": {Commit: 2000, Ord: 5}}, Observers: []*Observer{o}})
	h.push(3, 10, 10) // settles up to 3000:10
	h.waitAcked(3*1000 + 100)
	// A chunk read again after a restart keeps the ids of its first read, far below.
	evs := readEvents(nil, 1499, 5)
	tickets := make([]lsn.Ticket, len(evs))
	for i := range tickets {
		tickets[i] = h.wm.Dispatch(3500)
	}
	h.p.Push(evs, tickets)
	h.waitAcked(3500)
	if got := len(rec.all); got != 15+5 {
		t.Fatalf("unexpected delivery count; got %d; want 20 (15 streamed, 5 snapshot rows)", got)
	}
	if p := h.p.Progress()["o.0"]; p != (lsn.Position{Commit: 3000, Ord: 10}) {
		t.Fatalf("snapshot rows moved the checkpoint; got %v; want 3000:10", p)
	}
}

func TestTargetSendsReadsToOneObserver(t *testing.T) {
	recA, recB := newRecorder(), newRecorder()
	a := observer(recA, 1, RetryPolicy{}, FailureLog)
	a.Ops = []decoder.Op{decoder.OpRead, decoder.OpUpdate}
	b := observer(recB, 1, RetryPolicy{}, FailureLog) // UPDATE only
	b.Name, b.Actions[0].ID = "b", "b.0"
	h := start(t, Options{Observers: []*Observer{a, b}})
	if got := h.p.ObserversOf("public", "t", decoder.OpRead); len(got) != 1 || got[0] != "o" {
		t.Fatalf("unexpected READ observers; got %v; want [o]", got)
	}
	rel, err := decoder.NewRelation(decoder.Relation{ID: 1, Namespace: "public", Name: "t",
		Columns: []decoder.Column{{Name: "id", TypeOID: 20, Key: true}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.p.Target(rel, "nobody"); err == nil {
		t.Fatalf("targeting an unknown observer succeeded")
	}
	release, err := h.p.Target(rel, "b")
	if err != nil {
		t.Fatal(err)
	}
	evs := readEvents(rel, 7, 3)
	tickets := []lsn.Ticket{h.wm.Dispatch(100), h.wm.Dispatch(100), h.wm.Dispatch(100)}
	h.p.Push(evs, tickets)
	h.waitAcked(100)
	release()
	evs = readEvents(rel, 15, 2) // no longer targeted: to the observers listing READ
	h.p.Push(evs, []lsn.Ticket{h.wm.Dispatch(200), h.wm.Dispatch(200)})
	h.waitAcked(200)
	recA.mu.Lock()
	recB.mu.Lock()
	defer recA.mu.Unlock()
	defer recB.mu.Unlock()
	if len(recB.all) != 3 || len(recA.all) != 2 {
		t.Fatalf("unexpected deliveries; got %d to b (targeted, UPDATE only) and %d to o; want 3 and 2", len(recB.all), len(recA.all))
	}
}

// TestPushTargetedSendsReadsToOneObserver: snapshot rows that arrive from the
// transport (no Relation) marked for an observer reach only that observer, whatever
// its event_type lists; rows for an observer the pipeline does not have reach nobody
// and are settled; Routes answers as the pipeline does.
func TestPushTargetedSendsReadsToOneObserver(t *testing.T) {
	recA, recB := newRecorder(), newRecorder()
	a := observer(recA, 1, RetryPolicy{}, FailureLog)
	a.Ops = []decoder.Op{decoder.OpRead, decoder.OpUpdate}
	b := observer(recB, 1, RetryPolicy{}, FailureLog) // UPDATE only
	b.Name, b.Actions[0].ID = "b", "b.0"
	h := start(t, Options{Observers: []*Observer{a, b}})
	routes := NewRoutes([]*Observer{{Name: a.Name, Schema: a.Schema, Table: a.Table, Ops: a.Ops}, {Name: b.Name, Schema: b.Schema, Table: b.Table, Ops: b.Ops}})
	if got, want := routes.ObserversOf("public", "t", decoder.OpRead), h.p.ObserversOf("public", "t", decoder.OpRead); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("unexpected READ observers of the routes; got %v; want %v", got, want)
	}
	if _, err := routes.Target("public", "other", "b"); err == nil {
		t.Fatalf("targeting an observer of another table succeeded")
	}
	h.p.PushTargeted("b", readEvents(nil, 7, 3), []lsn.Ticket{h.wm.Dispatch(100), h.wm.Dispatch(100), h.wm.Dispatch(100)})
	h.p.PushTargeted("nobody", readEvents(nil, 9, 2), []lsn.Ticket{h.wm.Dispatch(150), h.wm.Dispatch(150)})
	h.p.Push(readEvents(nil, 15, 2), []lsn.Ticket{h.wm.Dispatch(200), h.wm.Dispatch(200)}) // not targeted
	h.waitAcked(200)
	recA.mu.Lock()
	recB.mu.Lock()
	defer recA.mu.Unlock()
	defer recB.mu.Unlock()
	if len(recB.all) != 3 || len(recA.all) != 2 {
		t.Fatalf("unexpected deliveries; got %d to b (targeted, UPDATE only) and %d to o; want 3 and 2", len(recB.all), len(recA.all))
	}
}

// Routes.Observed answers whether any observer fires for an event: by table and
// operation, wildcard observers for every table, messages by prefix.
func TestRoutesObserved(t *testing.T) {
	routes := NewRoutes([]*Observer{
		{Name: "orders", Schema: "public", Table: "orders", Ops: []decoder.Op{decoder.OpInsert}},
		{Name: "deletes", Ops: []decoder.Op{decoder.OpDelete}},
		{Name: "audit", Ops: []decoder.Op{decoder.OpMessage}, MessagePrefix: "audit"},
	})
	for _, c := range []struct {
		ev   *decoder.Event
		want bool
	}{
		{&decoder.Event{Schema: "public", Table: "orders", Op: decoder.OpInsert}, true},
		{&decoder.Event{Schema: "public", Table: "orders", Op: decoder.OpUpdate}, false},
		{&decoder.Event{Schema: "public", Table: "other", Op: decoder.OpInsert}, false},
		{&decoder.Event{Schema: "public", Table: "other", Op: decoder.OpDelete}, true},
		{&decoder.Event{Op: decoder.OpMessage, Message: &decoder.Message{Prefix: "audit"}}, true},
		{&decoder.Event{Op: decoder.OpMessage, Message: &decoder.Message{Prefix: "other"}}, false},
	} {
		if got := routes.Observed(c.ev); got != c.want {
			t.Errorf("Observed(%s %s.%s) = %v; want %v", c.ev.Op, c.ev.Schema, c.ev.Table, got, c.want)
		}
	}
}
