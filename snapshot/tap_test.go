package snapshot

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// injector records what the tap hands on.
type injector struct{ evs []*decoder.Event }

func (in *injector) Inject(ev *decoder.Event) lsn.Ticket {
	in.evs = append(in.evs, ev)
	return lsn.Ticket(len(in.evs))
}

func row(names []string, values ...string) *decoder.Row {
	r := &decoder.Row{Names: names}
	for _, v := range values {
		r.Values = append(r.Values, json.RawMessage(v))
	}
	return r
}

func mark(kind, nonce string) *decoder.Event {
	return &decoder.Event{Op: decoder.OpMessage, Message: &decoder.Message{Prefix: Prefix, Content: []byte(kind + " 1 1 " + nonce)}}
}

// TestTapDropsWhatTheReadDidNotSee drives the tap with a synthetic stream: changes
// before the low watermark that the chunk's read saw keep their rows, changes the
// read did not see and changes in the window drop theirs, and a change without a key
// makes the chunk read again.
func TestTapDropsWhatTheReadDidNotSee(t *testing.T) {
	tbl := &table{OID: 42, Schema: "public", Name: "t", ChunkKey: []string{"id"}, KeyIndex: []int{0}}
	names := []string{"id", "v"}
	change := func(op decoder.Op, xid uint32, id string) *decoder.Event {
		ev := &decoder.Event{Op: op, Xid: xid, RelationID: 42, Schema: "public", Table: "t"}
		switch op {
		case decoder.OpDelete:
			ev.Old, ev.OldKind = row([]string{"id"}, id), decoder.OldKey
		default:
			ev.New = row(names, id, "0")
		}
		return ev
	}
	tp := newTap()
	w := tp.watch(tbl)
	defer tp.unwatch(w)
	snap, err := parseSnapshot("100:105:103") // sees 99, 100, 101, 102, 104; not 103, 105+
	if err != nil {
		t.Fatal(err)
	}
	run := func(stream []*decoder.Event, c *chunk, n int) (chunkResult, []string) {
		t.Helper()
		var evs []*decoder.Event
		var keys []string
		for i := 1; i <= n; i++ {
			k := strconv.Itoa(i)
			evs = append(evs, &decoder.Event{Op: decoder.OpRead, New: row(names, k, "1")})
			keys = append(keys, k)
		}
		in := &injector{}
		for _, ev := range stream {
			if ev == nil { // the reader fills the chunk between the watermarks
				tp.fill(c, evs, keys, snap)
				continue
			}
			if keep := tp.Intercept(ev, in); keep != (ev.Op != decoder.OpMessage) {
				t.Fatalf("unexpected keep %v for %v", keep, ev.Op)
			}
		}
		res := <-c.done
		var got []string
		for _, ev := range in.evs {
			got = append(got, string(ev.New.Values[0]))
		}
		return res, got
	}

	c := tp.expect(w, "n1")
	res, got := run([]*decoder.Event{
		change(decoder.OpUpdate, 99, "1"),  // seen by the read: row 1 kept
		change(decoder.OpUpdate, 103, "2"), // in progress during the read: row 2 dropped
		change(decoder.OpInsert, 9, "77"),  // a row the chunk does not hold
		mark("low", "n1"),
		change(decoder.OpUpdate, 101, "3"), // in the window, even though seen: dropped
		change(decoder.OpDelete, 106, "4"), // in the window: dropped
		nil,
		mark("high", "n1"),
		change(decoder.OpUpdate, 107, "5"), // after the high watermark: no effect
	}, c, 6)
	if res.retry || res.sent != 3 || len(got) != 3 || got[0] != "1" || got[1] != "5" || got[2] != "6" {
		t.Fatalf("unexpected hand-on; got %+v %v; want rows 1, 5, 6", res, got)
	}
	// The history keeps what the read did not see (103, and 105+ after the window)
	// until a later read sees it.
	if n := tp.historyLen(w); n != 3 {
		t.Fatalf("unexpected history; got %d changes; want 3 (xids 103, 106, 107)", n)
	}
	c = tp.expect(w, "n2")
	res, got = run([]*decoder.Event{mark("low", "n2"), nil, mark("high", "n2")}, c, 3)
	if res.sent != 2 || got[0] != "1" || got[1] != "3" {
		t.Fatalf("unexpected hand-on of the second chunk; got %+v %v; want rows 1 and 3 (2 is still unseen)", res, got)
	}

	// A change whose key cannot be read from it: the chunk is read again.
	c = tp.expect(w, "n3")
	res, _ = run([]*decoder.Event{mark("low", "n3"),
		{Op: decoder.OpUpdate, Xid: 110, RelationID: 42, New: row([]string{"v"}, "1")}, nil, mark("high", "n3")}, c, 2)
	if !res.retry || res.sent != 0 {
		t.Fatalf("unexpected result for a change without key; got %+v; want retry", res)
	}
	// A stale watermark (another run's nonce) is consumed and changes nothing.
	if tp.Intercept(mark("high", "old"), &injector{}) {
		t.Fatalf("a stale watermark was handed on")
	}
}
