package pipeline

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/fraiseql/fraiseql-observers/decoder"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// The dedup set holds about the in-flight window of an action, not every settled
// event: 20 transactions of 1000 events, each settled by 4 workers before the next is
// pushed, leave at most a few pruning thresholds' worth of ids in it; and all 20,000,
// sent again as after a reconnect, are recognised, none delivered twice.
func TestDedupHoldsOnlyTheWindow(t *testing.T) {
	rec := newRecorder()
	d, err := NewDedup(100_000)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := start(t, Options{Dedup: d, Observers: []*Observer{observer(rec, 4, RetryPolicy{}, FailureLog)}})
	var all []*decoder.Event
	for tx := 1; tx <= 20; tx++ {
		commit := lsn.LSN(tx * 1000)
		var batch []*decoder.Event
		var tickets []lsn.Ticket
		for i := 1; i <= 1000; i++ {
			batch = append(batch, &decoder.Event{
				ID: lsn.Position{Commit: commit, Ord: uint32(i)}, Schema: "public", Table: "t", Op: decoder.OpUpdate,
				Key: &decoder.Row{Names: []string{"id"}, Values: []json.RawMessage{json.RawMessage(strconv.Itoa(i % 300))}},
			})
			tickets = append(tickets, h.wm.Dispatch(commit))
		}
		all = append(all, batch...)
		h.p.Push(batch, tickets)
		h.wm.Ack(h.wm.Dispatch(commit + 100))
		h.waitAcked(commit + 100)
	}
	d.Wait()
	var tickets []lsn.Ticket
	replay := make([]*decoder.Event, len(all))
	for i, ev := range all {
		replay[i] = &decoder.Event{ID: ev.ID, Schema: ev.Schema, Table: ev.Table, Op: ev.Op, Key: ev.Key}
		tickets = append(tickets, h.wm.Dispatch(ev.ID.Commit))
	}
	h.p.Push(replay, tickets)
	h.wm.Ack(h.wm.Dispatch(30_000))
	h.waitAcked(30_000)
	if n := d.Len(); n > 3*1024 {
		t.Fatalf("dedup holds %d ids after 20000 settled events; want at most %d (about the window)", n, 3*1024)
	}
	if len(rec.all) != 20*1000 {
		t.Fatalf("unexpected delivery count %d", len(rec.all))
	}
}

// Ids settled out of order between the watermark and the highest settled id are found
// by lookup; ids above the highest are new; ids at or below the pruned floor are seen.
func TestDedupByPosition(t *testing.T) {
	d, _ := NewDedup(100)
	a := d.action("o.0")
	pos := func(c uint64) lsn.Position { return lsn.Position{Commit: lsn.LSN(c)} }
	var acked lsn.Position
	wm := func() (lsn.Position, bool) { return acked, acked != lsn.Position{} }
	for _, c := range []uint64{10, 30, 20, 50} { // 40 still in flight
		a.add(pos(c), false, wm)
	}
	for c, want := range map[uint64]bool{10: true, 20: true, 30: true, 40: false, 50: true, 60: false, 5: false} {
		if got := a.seen(pos(c), false); got != want {
			t.Errorf("seen(%d) = %v, want %v", c, got, want)
		}
	}
	// Force a pruning with the watermark at 30: 10, 20, 30 leave the set but stay seen.
	acked, a.pruneAt = pos(30), 0
	a.add(pos(70), false, wm)
	if len(a.window) != 2 {
		t.Fatalf("window after pruning: %v", a.window)
	}
	for c, want := range map[uint64]bool{5: true, 20: true, 40: false, 50: true, 70: true, 80: false} {
		if got := a.seen(pos(c), false); got != want {
			t.Errorf("after pruning: seen(%d) = %v, want %v", c, got, want)
		}
	}
	// Snapshot row ids are remembered by id only, bounded by the entries.
	a.add(pos(1), true, wm)
	if !a.seen(pos(1), true) || a.seen(pos(2), true) {
		t.Fatal("snapshot row ids are matched exactly")
	}
	for c := uint64(100); c < 300; c++ {
		a.add(pos(c), true, wm)
	}
	if len(a.reads) != 100 || a.seen(pos(1), true) {
		t.Fatalf("snapshot row ids not bounded: %d held", len(a.reads))
	}
}
