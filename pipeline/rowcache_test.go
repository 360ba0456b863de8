package pipeline

import (
	"encoding/json"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

var relOrders = &decoder.Relation{ID: 42, Namespace: "public", Name: "orders", ReplicaIdentity: 'd',
	Names: []string{"id", "status", "doc"}}

func rowEvent(op decoder.Op, ord uint32, id, status, doc string) *decoder.Event {
	ev := &decoder.Event{ID: lsn.Position{Commit: 100, Ord: ord}, Op: op, Schema: "public", Table: "orders",
		RelationID: 42, Relation: relOrders,
		Key: &decoder.Row{Names: []string{"id"}, Values: []json.RawMessage{raw(id)}}}
	switch op {
	case decoder.OpInsert, decoder.OpUpdate:
		ev.New = &decoder.Row{Names: relOrders.Names, Values: []json.RawMessage{raw(id), raw(status), raw(doc)}}
		if doc == "" { // unchanged TOAST: not sent
			ev.New = &decoder.Row{Names: []string{"id", "status"}, Values: []json.RawMessage{raw(id), raw(status)}}
			ev.Unavailable = []string{"doc"}
		}
	case decoder.OpDelete:
		ev.Old = ev.Key
		ev.OldKind = decoder.OldKey
	}
	return ev
}

func TestRowCacheSuppliesOldImageAndToast(t *testing.T) {
	rc, err := NewRowCache(1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	step := func(ev *decoder.Event) *decoder.Event {
		if f, ok := rc.apply(ev); ok {
			f.complete(ev)
		}
		return ev
	}
	// A row never seen: an update gets no old image.
	ev := step(rowEvent(decoder.OpUpdate, 1, "7", `"new"`, `{"a":1}`))
	if ev.OldKind != decoder.OldNone || ev.Old != nil {
		t.Fatalf("old image invented for a row never seen: %v", ev.OldKind)
	}
	// Insert, then an update whose TOAST column is unchanged.
	step(rowEvent(decoder.OpInsert, 2, "1", `"pending"`, `{"big":true}`))
	ev = step(rowEvent(decoder.OpUpdate, 3, "1", `"shipped"`, ""))
	if ev.OldKind != decoder.OldCached {
		t.Fatalf("unexpected old_kind %v; want cached", ev.OldKind)
	}
	if v, _ := ev.Old.Get("status"); string(v) != `"pending"` {
		t.Fatalf("unexpected old status %s", v)
	}
	if v, ok := ev.New.Get("doc"); !ok || string(v) != `{"big":true}` || ev.Unavailable != nil {
		t.Fatalf("unchanged TOAST column not filled: %s %v %v", v, ok, ev.Unavailable)
	}
	if !slices.Equal(ev.Changed, []string{"status"}) {
		t.Fatalf("unexpected changed columns %v", ev.Changed)
	}
	// The filled image is the new latest: a second update sees "shipped" as old.
	ev = step(rowEvent(decoder.OpUpdate, 4, "1", `"delivered"`, ""))
	if v, _ := ev.Old.Get("status"); string(v) != `"shipped"` {
		t.Fatalf("unexpected old status on the second update %s", v)
	}
	// Delete gets the full old image, then the row is forgotten.
	ev = step(rowEvent(decoder.OpDelete, 5, "1", "", ""))
	if ev.OldKind != decoder.OldCached || ev.Old.Len() != 3 {
		t.Fatalf("delete did not get the cached old image: %v", ev.OldKind)
	}
	ev = step(rowEvent(decoder.OpUpdate, 6, "1", `"x"`, `{}`))
	if ev.OldKind != decoder.OldNone {
		t.Fatalf("a deleted row was served from the cache")
	}
}

func TestRowCacheTruncateAndRelationChange(t *testing.T) {
	rc, err := NewRowCache(1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	step := func(ev *decoder.Event) *decoder.Event {
		if f, ok := rc.apply(ev); ok {
			f.complete(ev)
		}
		return ev
	}
	step(rowEvent(decoder.OpInsert, 1, "1", `"a"`, `{}`))
	step(&decoder.Event{ID: lsn.Position{Commit: 100, Ord: 2}, Op: decoder.OpTruncate, RelationID: 42, Relation: relOrders})
	if ev := step(rowEvent(decoder.OpUpdate, 3, "1", `"b"`, `{}`)); ev.OldKind != decoder.OldNone {
		t.Fatalf("served an image from before a TRUNCATE")
	}
	step(rowEvent(decoder.OpInsert, 4, "2", `"a"`, `{}`))
	ev := rowEvent(decoder.OpUpdate, 5, "2", `"b"`, `{}`)
	ev.Relation = &decoder.Relation{ID: 42, Namespace: "public", Name: "orders", Names: relOrders.Names} // ALTER TABLE happened
	if step(ev).OldKind != decoder.OldNone {
		t.Fatalf("served an image decoded with another relation")
	}
	if s := rc.Stats(); s.Hits != 0 || s.Misses != 2 {
		t.Fatalf("unexpected stats %+v", s)
	}
}

// TestRowCacheOnlyWhereNeeded checks that the cache keeps rows only of tables with an
// observer of their UPDATEs or DELETEs whose replica identity is not FULL.
func TestRowCacheOnlyWhereNeeded(t *testing.T) {
	rc, err := NewRowCache(1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	rec := newRecorder()
	ins := observer(rec, 1, RetryPolicy{}, FailureLog)
	ins.Table, ins.Ops = "orders", []decoder.Op{decoder.OpInsert, decoder.OpUpdate}
	ins.Actions[0].ID = "ins.0"
	h := start(t, Options{RowCache: rc, Observers: []*Observer{ins}})
	full := &decoder.Relation{ID: 43, Namespace: "public", Name: "orders", ReplicaIdentity: decoder.IdentityFull, Names: relOrders.Names}
	var evs []*decoder.Event
	for i := 1; i <= 10; i++ {
		ord := uint32(3 * i)
		evs = append(evs, rowEvent(decoder.OpInsert, ord, strconv.Itoa(i), `"a"`, `{}`)) // orders: cached
		other := rowEvent(decoder.OpInsert, ord+1, strconv.Itoa(i), `"a"`, `{}`)
		other.Table = "lines" // no observer of its UPDATEs or DELETEs
		other.RelationID, other.Relation = 44, &decoder.Relation{ID: 44, Namespace: "public", Name: "lines", ReplicaIdentity: 'd', Names: relOrders.Names}
		evs = append(evs, other)
		f := rowEvent(decoder.OpInsert, ord+2, strconv.Itoa(100+i), `"a"`, `{}`)
		f.Relation = full // the same table after ALTER TABLE ... REPLICA IDENTITY FULL
		evs = append(evs, f)
	}
	tickets := make([]lsn.Ticket, len(evs))
	for i, ev := range evs {
		tickets[i] = h.wm.Dispatch(ev.ID.Commit)
	}
	h.p.Push(evs, tickets)
	h.waitAcked(100)
	if n := rc.Stats().Entries; n != 10 {
		t.Fatalf("row cache holds %d rows; want the 10 of orders (REPLICA IDENTITY DEFAULT)", n)
	}
}

func TestRowCacheResetOnReplay(t *testing.T) {
	rc, err := NewRowCache(1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close) // after the pipeline stops (cleanups run last-in first-out)
	rec := newRecorder()
	o := observer(rec, 1, RetryPolicy{}, FailureLog)
	o.Table = "orders" // an observer of the table's UPDATEs: the cache keeps its rows
	h := start(t, Options{RowCache: rc, Observers: []*Observer{o}})
	push := func(evs ...*decoder.Event) {
		tickets := make([]lsn.Ticket, len(evs))
		for i, ev := range evs {
			tickets[i] = h.wm.Dispatch(ev.ID.Commit)
		}
		h.p.Push(evs, tickets)
	}
	a := rowEvent(decoder.OpInsert, 1, "1", `"a"`, `{}`)
	b := rowEvent(decoder.OpUpdate, 2, "1", `"b"`, `{}`)
	push(a, b)
	h.waitAcked(100)
	if b.OldKind != decoder.OldCached {
		t.Fatalf("expected a cached old image")
	}
	// The stream replays b: the cache (holding b's image) must not serve it as b's old image.
	b2 := rowEvent(decoder.OpUpdate, 2, "1", `"b"`, `{}`)
	push(b2)
	h.waitAcked(100)
	if b2.OldKind != decoder.OldNone {
		t.Fatalf("replayed event got an old image from later in the stream: %v", b2.Old)
	}
}

// TestRowCacheReturnsWhatItFills checks that the cache leaves the event alone and
// returns what it supplies; the router completes the event with it.
func TestRowCacheReturnsWhatItFills(t *testing.T) {
	rc, err := NewRowCache(1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, ok := rc.apply(rowEvent(decoder.OpInsert, 1, "1", `"pending"`, `{"big":true}`)); ok {
		t.Fatalf("the cache supplied something for an INSERT")
	}
	ev := rowEvent(decoder.OpUpdate, 2, "1", `"shipped"`, "")
	f, ok := rc.apply(ev)
	if !ok || f.old.Len() != 3 || f.new.Len() != 3 || f.unavailable != nil || !slices.Equal(f.changed, []string{"status"}) {
		t.Fatalf("unexpected fill: %v %+v", ok, f)
	}
	if ev.OldKind != decoder.OldNone || ev.Old != nil || ev.New.Len() != 2 || ev.Changed != nil || len(ev.Unavailable) != 1 {
		t.Fatalf("apply modified the event: %s", ev.JSON())
	}
	f.complete(ev)
	if got := string(ev.JSON()); got != `{"id":"0/64:2","lsn":"0/0","commit_lsn":"0/64","xid":0,"commit_time":null,"schema":"public","table":"orders","op":"UPDATE",`+
		`"key":{"id":1},"new":{"id":1,"status":"shipped","doc":{"big":true}},"old":{"id":1,"status":"pending","doc":{"big":true}},"old_kind":"cached","changed":["status"],"unavailable":null}` {
		t.Fatalf("unexpected completed event %s", got)
	}
}

// TestRowCacheImagesCountInFlight: the images the cache puts into an event are the
// event's own copies, so they count in pipeline.max_in_flight_bytes until it settles.
func TestRowCacheImagesCountInFlight(t *testing.T) {
	rc, err := NewRowCache(1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	rec := newRecorder()
	block := make(chan struct{})
	rec.delay = func() time.Duration { <-block; return 0 }
	o := observer(rec, 1, RetryPolicy{}, FailureLog)
	o.Table = "orders"
	h := start(t, Options{RowCache: rc, Observers: []*Observer{o}})
	var release sync.Once
	t.Cleanup(func() { release.Do(func() { close(block) }) }) // before the pipeline stops
	a := rowEvent(decoder.OpInsert, 1, "1", `"pending"`, `{"doc":"`+strings.Repeat("d", 4000)+`"}`)
	b := rowEvent(decoder.OpUpdate, 2, "1", `"shipped"`, "") // its doc is filled from a's image
	before := b.Size()
	h.p.Push([]*decoder.Event{a, b}, []lsn.Ticket{h.wm.Dispatch(100), h.wm.Dispatch(100)})
	for rec.inFlight.Load() == 0 {
		runtime.Gosched() // until b is with the sink
	}
	if b.OldKind != decoder.OldCached {
		t.Fatalf("unexpected old_kind %v; want cached", b.OldKind)
	}
	if got, want := h.p.InFlightBytes(), int64(b.Size()); got != want || want <= int64(before)+8000 {
		t.Fatalf("unexpected bytes in flight with the filled update; got %d; want %d (%d before the fill)", got, want, before)
	}
	release.Do(func() { close(block) })
	if err := h.p.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := h.p.InFlightBytes(); n != 0 {
		t.Fatalf("bytes still in flight after everything settled: %d", n)
	}
}
