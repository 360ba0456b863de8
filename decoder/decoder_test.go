package decoder

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// run decodes msgs in order and returns every event; it fails on any error.
func run(t *testing.T, d *Decoder, msgs ...[]byte) []*Event {
	t.Helper()
	var evs []*Event
	for i, m := range msgs {
		var err error
		if evs, _, err = d.Decode(lsn.LSN(0x100+i), m, evs); err != nil {
			t.Fatalf("message %d (%c): %v", i, m[0], err)
		}
	}
	return evs
}

func rowJSON(r *Row) string { return string(r.AppendJSON(nil)) }

var ordersRel = mkRelation(1, "public", "orders", IdentityDefault,
	col{"id", 20, true}, col{"note", 25, false}, col{"big", 25, false})

func TestDecoderTransaction(t *testing.T) {
	d := New(Options{})
	if d.InTransaction() {
		t.Fatalf("new decoder in a transaction")
	}
	_, kind, err := d.Decode(0x10, mkBegin(0x500, 42), nil)
	if err != nil || kind != KindBegin || !d.InTransaction() {
		t.Fatalf("unexpected Begin result %v %v %v", kind, err, d.InTransaction())
	}
	if b := d.Begin(); b.FinalLSN != 0x500 || b.Xid != 42 || !b.CommitTime.Equal(time.Date(2000, 1, 1, 0, 13, 9, 0, time.UTC)) {
		t.Fatalf("unexpected Begin %+v", b)
	}
	evs := run(t, d,
		mkOrigin("up"),
		ordersRel,
		mkRelation(2, "public", "items", IdentityDefault, col{"id", 23, true}),
		mkInsert(1, txt("1"), txt("a"), null),
		mkInsert(1, txt("2"), txt("b"), null),
		mkTruncate(TruncateCascade, 1, 2),
		mkMessage(true, 0x480, "p", []byte("c")),
	)
	if len(evs) != 5 {
		t.Fatalf("unexpected event count; got %d; want 5", len(evs))
	}
	wantOps := []Op{OpInsert, OpInsert, OpTruncate, OpTruncate, OpMessage}
	for i, e := range evs {
		if e.ID != (lsn.Position{Commit: 0x500, Ord: uint32(i + 1)}) || e.Op != wantOps[i] || e.Xid != 42 || e.Origin != "up" {
			t.Fatalf("unexpected event %d: id %v op %v xid %d origin %q", i, e.ID, e.Op, e.Xid, e.Origin)
		}
	}
	if evs[3].Table != "items" || evs[3].New != nil || evs[3].Key != nil || evs[4].Schema != "" {
		t.Fatalf("unexpected truncate/message events")
	}
	if d.Ordinal() != 5 {
		t.Fatalf("unexpected ordinal; got %d; want 5", d.Ordinal())
	}
	_, kind, err = d.Decode(0x600, mkCommit(0x500, 0x530), nil)
	if err != nil || kind != KindCommit || d.InTransaction() {
		t.Fatalf("unexpected Commit result %v %v", kind, err)
	}
	if c := d.LastCommit(); c.CommitLSN != 0x500 || c.EndLSN != 0x530 {
		t.Fatalf("unexpected LastCommit %+v", c)
	}
	// A non-transactional message outside any transaction.
	evs, kind, err = d.Decode(0x700, mkMessage(false, 0x6F0, "hb", []byte{0xff}), nil)
	if err != nil || kind != KindMessage || len(evs) != 1 {
		t.Fatalf("unexpected result %v %v %d", kind, err, len(evs))
	}
	e := evs[0]
	if e.ID != (lsn.Position{Commit: 0x6F0, Ord: 1}) || e.Xid != 0 || !e.CommitTime.IsZero() || e.LSN != 0x700 || e.Message.Transactional {
		t.Fatalf("unexpected non-transactional message event %+v", e)
	}
	if got := string(e.JSON()); !strings.Contains(got, `"commit_time":null`) || !strings.Contains(got, `"content_base64":"/w=="`) {
		t.Fatalf("unexpected JSON %s", got)
	}
}

func TestRelationReplaced(t *testing.T) {
	d := New(Options{})
	evs := run(t, d, mkBegin(0x500, 1), ordersRel, mkInsert(1, txt("1"), txt("a"), txt("x")))
	first := evs[0].Relation
	evs = run(t, d, mkRelation(1, "public", "orders", IdentityDefault, col{"id", 20, true}, col{"renamed", 25, false}),
		mkInsert(1, txt("2"), txt("b")))
	if evs[0].Relation == first || d.Relation(1) != evs[0].Relation {
		t.Fatalf("a new Relation message did not make a new Relation value")
	}
	if first.Names[1] != "note" || len(first.Columns) != 3 {
		t.Fatalf("the old Relation was modified: %v", first.Names)
	}
	if got := rowJSON(evs[0].New); got != `{"id":2,"renamed":"b"}` {
		t.Fatalf("unexpected row %s", got)
	}
	if &evs[0].New.Names[0] != &evs[0].Relation.Names[0] {
		t.Fatalf("row names are not shared with the relation")
	}
}

func TestKeyUnderFull(t *testing.T) {
	full := mkRelation(3, "public", "f", IdentityFull, col{"id", 23, true}, col{"v", 25, true})
	msgs := [][]byte{mkBegin(0x500, 1), full,
		mkInsert(3, txt("1"), txt("a")),
		mkUpdate(3, 'O', []TupleColumn{txt("1"), txt("a")}, []TupleColumn{txt("1"), txt("b")}),
		mkDelete(3, 'O', txt("1"), txt("b"))}
	evs := run(t, New(Options{}), msgs...)
	for _, e := range evs {
		if got := rowJSON(e.Key); got != `{"id":1,"v":"a"}` && got != `{"id":1,"v":"b"}` {
			t.Fatalf("without a hook the key under FULL is every column; got %s", got)
		}
	}
	calls := 0
	hook := func(rel *Relation) []string { calls++; return []string{"id", "nope"} }
	evs = run(t, New(Options{KeyColumns: hook}), msgs...)
	for _, e := range evs {
		if got := rowJSON(e.Key); got != `{"id":1}` {
			t.Fatalf("unexpected key with the hook; got %s", got)
		}
	}
	if calls != 1 {
		t.Fatalf("unexpected hook calls; got %d; want 1", calls)
	}
	if evs[1].OldKind != OldFull || strings.Join(evs[1].Changed, ",") != "v" || rowJSON(evs[1].Old) != `{"id":1,"v":"a"}` {
		t.Fatalf("unexpected update event: %s", evs[1].JSON())
	}
	if evs[2].OldKind != OldFull || evs[2].New != nil {
		t.Fatalf("unexpected delete event: %s", evs[2].JSON())
	}
}

func TestOldKeyTuple(t *testing.T) {
	d := New(Options{})
	evs := run(t, d, mkBegin(0x500, 1), ordersRel,
		mkUpdate(1, 'K', []TupleColumn{txt("1"), null, null}, []TupleColumn{txt("2"), txt("n"), null}),
		mkDelete(1, 'K', txt("2"), null, null))
	if evs[0].OldKind != OldKey || rowJSON(evs[0].Old) != `{"id":1}` || rowJSON(evs[0].Key) != `{"id":2}` || evs[0].Changed != nil {
		t.Fatalf("unexpected key update: %s", evs[0].JSON())
	}
	if evs[1].OldKind != OldKey || rowJSON(evs[1].Old) != `{"id":2}` || rowJSON(evs[1].Key) != `{"id":2}` {
		t.Fatalf("unexpected delete: %s", evs[1].JSON())
	}
}

func TestUnchangedToast(t *testing.T) {
	d := New(Options{})
	fullRel := mkRelation(4, "public", "full", IdentityFull, col{"id", 20, true}, col{"big", 25, true})
	keyRel := mkRelation(5, "public", "k", IdentityDefault, col{"k", 25, true}, col{"v", 23, false})
	evs := run(t, d, mkBegin(0x500, 1), ordersRel, fullRel, keyRel,
		mkUpdate(1, 0, nil, []TupleColumn{txt("1"), txt("n"), unchanged}),
		mkUpdate(4, 'O', []TupleColumn{txt("1"), txt("long")}, []TupleColumn{txt("1"), unchanged}),
		mkUpdate(5, 'K', []TupleColumn{txt("key"), null}, []TupleColumn{unchanged, txt("2")}),
	)
	e := evs[0]
	if rowJSON(e.New) != `{"id":1,"note":"n"}` || strings.Join(e.Unavailable, ",") != "big" || e.New.Len() != 2 {
		t.Fatalf("unexpected DEFAULT event: %s", e.JSON())
	}
	if _, ok := e.New.Get("big"); ok {
		t.Fatalf("an unchanged TOAST column is present in New")
	}
	e = evs[1]
	if rowJSON(e.New) != `{"id":1,"big":"long"}` || e.Unavailable != nil || len(e.Changed) != 0 || e.Changed == nil {
		t.Fatalf("unexpected FULL event: %s", e.JSON())
	}
	e = evs[2]
	if rowJSON(e.New) != `{"k":"key","v":2}` || rowJSON(e.Key) != `{"k":"key"}` {
		t.Fatalf("unexpected event for an unchanged key with an old key: %s", e.JSON())
	}
	// An unchanged key without any old image: never a guessed key.
	_, _, err := d.Decode(0x200, mkUpdate(5, 0, nil, []TupleColumn{unchanged, txt("3")}), nil)
	var ve *ValueError
	if !errors.As(err, &ve) || !errors.Is(err, ErrKeyUnavailable) || ve.Column != "k" || ve.ID.Ord != 4 || ve.Table != "k" {
		t.Fatalf("unexpected error; got %v; want ErrKeyUnavailable for column k at ordinal 4", err)
	}
	evs = run(t, d, mkInsert(5, txt("x"), txt("1")))
	if evs[0].ID.Ord != 5 {
		t.Fatalf("the decoder did not go on after a ValueError; got ordinal %d; want 5", evs[0].ID.Ord)
	}
}

func TestMaxEventBytes(t *testing.T) {
	d := New(Options{MaxEventBytes: 100})
	run(t, d, mkBegin(0x500, 1), ordersRel)
	_, _, err := d.Decode(0x200, mkInsert(1, txt("1"), txt(strings.Repeat("x", 200)), null), nil)
	var te *TooLargeError
	if !errors.As(err, &te) || te.Limit != 100 || te.Size <= 100 || te.Table != "orders" || te.ID.Ord != 1 || te.LSN != 0x200 {
		t.Fatalf("unexpected error; got %#v", err)
	}
	// Many small values add up too.
	_, _, err = d.Decode(0x201, mkInsert(1, txt("1"), txt(strings.Repeat("x", 60)), txt(strings.Repeat("y", 60))), nil)
	if !errors.As(err, &te) || te.ID.Ord != 2 {
		t.Fatalf("unexpected error; got %v", err)
	}
	_, _, err = d.Decode(0x202, mkMessage(true, 0x202, "p", make([]byte, 101)), nil)
	if !errors.As(err, &te) || te.ID.Ord != 3 {
		t.Fatalf("unexpected error for a large message; got %v", err)
	}
	evs := run(t, d, mkInsert(1, txt("1"), txt("small"), null))
	if len(evs) != 1 || evs[0].ID.Ord != 4 {
		t.Fatalf("the decoder did not go on after a TooLargeError")
	}
}

func TestInvalidUTF8Events(t *testing.T) {
	d := New(Options{})
	run(t, d, mkBegin(0x500, 1), ordersRel, mkRelation(6, "public", "bad\xff", IdentityDefault, col{"id", 23, true}))
	_, _, err := d.Decode(0x200, mkInsert(1, txt("1"), txt("caf\xe9"), null), nil)
	var ve *ValueError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidUTF8) || ve.Column != "note" {
		t.Fatalf("unexpected error for an invalid value; got %v", err)
	}
	if _, _, err = d.Decode(0x201, mkInsert(6, txt("1")), nil); !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("unexpected error for an invalid table name; got %v", err)
	}
	if _, _, err = d.Decode(0x202, mkTruncate(0, 1, 6), nil); !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("unexpected error for a truncate of an invalid table name; got %v", err)
	}
	if _, _, err = d.Decode(0x203, mkMessage(true, 0x203, "p\xff", nil), nil); !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("unexpected error for an invalid prefix; got %v", err)
	}
	if d.Ordinal() != 5 {
		t.Fatalf("unexpected ordinal after refused changes; got %d; want 5", d.Ordinal())
	}
}

func TestBinaryValues(t *testing.T) {
	d := New(Options{})
	rel := mkRelation(7, "public", "b", IdentityDefault, col{"id", 23, true}, col{"t", 25, false}, col{"f", 701, false},
		col{"u", 2950, false}, col{"jb", 3802, false}, col{"ok", 16, false})
	evs := run(t, d, mkBegin(0x500, 1), rel, mkInsert(7, bin(0, 0, 1, 0), bin('h', 'i'), bin(0x3f, 0xf8, 0, 0, 0, 0, 0, 0),
		bin(0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11), bin(1, '[', '1', ' ', ']'), bin(1)))
	if got := rowJSON(evs[0].New); got != `{"id":256,"t":"hi","f":1.5,"u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","jb":[1],"ok":true}` {
		t.Fatalf("unexpected binary row %s", got)
	}
	numeric := mkRelation(8, "public", "n", IdentityDefault, col{"n", 1700, false})
	run(t, d, numeric)
	if _, _, err := d.Decode(0x200, mkInsert(8, bin(0, 0)), nil); !errors.Is(err, ErrBinaryUnsupported) {
		t.Fatalf("unexpected error for binary numeric; got %v", err)
	}
	if _, _, err := d.Decode(0x201, mkInsert(7, bin(0), null, null, null, null, null), nil); !errors.Is(err, ErrBinaryUnsupported) {
		t.Fatalf("unexpected error for a short binary int4; got %v", err)
	}
}

func TestEventsOwnTheirBytes(t *testing.T) {
	d := New(Options{})
	run(t, d, mkBegin(0x500, 1), ordersRel)
	msg := mkInsert(1, txt("1"), txt("hello"), null)
	evs, _, err := d.Decode(0x200, msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range msg {
		msg[i] = 'X'
	}
	run(t, d, mkInsert(1, txt("2"), txt("other"), txt("z"))) // reuses the scratch space
	if got := rowJSON(evs[0].New); got != `{"id":1,"note":"hello","big":null}` {
		t.Fatalf("event changed with the input buffer: %s", got)
	}
}

func TestTypeMessages(t *testing.T) {
	d := New(Options{})
	run(t, d, mkBegin(0x500, 1), mkType(90000, "public", "mood"), mkRelation(9, "public", "m", IdentityDefault, col{"m", 90000, false}),
		mkInsert(9, txt("happy")))
	if d.TypeName(90000) != "public.mood" || d.TypeName(23) != "int4" || d.TypeName(1007) != "_int4" || d.TypeName(1) != "" {
		t.Fatalf("unexpected type names")
	}
}

func TestParse(t *testing.T) {
	f := func(data []byte, check func(Msg) bool) {
		t.Helper()
		m, err := Parse(data)
		if err != nil || !check(m) {
			t.Fatalf("unexpected result for %q: %#v %v", data[0], m, err)
		}
	}
	f(mkBegin(5, 7), func(m Msg) bool { b := m.(*Begin); return b.FinalLSN == 5 && b.Xid == 7 && m.Kind() == KindBegin })
	f(mkCommit(5, 9), func(m Msg) bool { c := m.(*Commit); return c.CommitLSN == 5 && c.EndLSN == 9 })
	f(mkOrigin("o"), func(m Msg) bool { o := m.(*Origin); return o.Name == "o" && o.CommitLSN == 0xABCDEF })
	f(mkType(1, "s", "t"), func(m Msg) bool { y := m.(*Type); return y.ID == 1 && y.Namespace == "s" && y.Name == "t" })
	f(ordersRel, func(m Msg) bool {
		r := m.(*Relation)
		return r.ID == 1 && r.Name == "orders" && r.ReplicaIdentity == IdentityDefault && r.Columns[0].Key && !r.Columns[1].Key && r.Columns[2].TypeOID == 25
	})
	f(mkInsert(1, txt("1"), null, unchanged), func(m Msg) bool {
		i := m.(*Insert)
		return i.RelationID == 1 && string(i.New.Columns[0].Data) == "1" && i.New.Columns[1].Kind == TupleNull && i.New.Columns[2].Kind == TupleUnchanged
	})
	f(mkUpdate(1, 0, nil, []TupleColumn{txt("1")}), func(m Msg) bool { u := m.(*Update); return u.Old == nil && u.OldKind == 0 })
	f(mkUpdate(1, 'O', []TupleColumn{txt("0")}, []TupleColumn{txt("1")}), func(m Msg) bool {
		u := m.(*Update)
		return u.OldKind == 'O' && string(u.Old.Columns[0].Data) == "0" && string(u.New.Columns[0].Data) == "1"
	})
	f(mkDelete(1, 'K', txt("1")), func(m Msg) bool { x := m.(*Delete); return x.OldKind == 'K' && len(x.Old.Columns) == 1 })
	f(mkTruncate(3, 1, 2), func(m Msg) bool {
		x := m.(*Truncate)
		return x.Cascade() && x.RestartIdentity() && len(x.RelationIDs) == 2 && x.RelationIDs[1] == 2
	})
	f(mkMessage(true, 9, "p", []byte("c")), func(m Msg) bool {
		x := m.(*Message)
		return x.Transactional && x.LSN == 9 && x.Prefix == "p" && string(x.Content) == "c"
	})
	if _, err := Parse(nil); err == nil {
		t.Fatalf("Parse accepted an empty message")
	}
}

// TestInsertAllocations checks the allocation budget of the hot path: the event (with
// its rows), one slice of values and one buffer of value bytes.
func TestInsertAllocations(t *testing.T) {
	d := New(Options{})
	run(t, d, mkBegin(0x500, 1), ordersRel)
	msg := mkInsert(1, txt("1"), txt("hello"), txt("world"))
	evs := make([]*Event, 0, 1)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, _, err := d.Decode(0x200, msg, evs[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 3 {
		t.Fatalf("unexpected allocations per Insert; got %v; want at most 3", allocs)
	}
}

// TestOldKeyTupleWithoutKeyColumns decodes a 'K' tuple of a relation that flags no key
// column (a stream that does not follow PostgreSQL's rules): every sent column is kept,
// named after the relation, and nothing panics.
func TestOldKeyTupleWithoutKeyColumns(t *testing.T) {
	d := New(Options{})
	evs := run(t, d, mkBegin(0x500, 1), mkRelation(9, "public", "nokey", IdentityDefault, col{"a", 23, false}, col{"b", 25, false}),
		mkDelete(9, 'K', txt("1"), null))
	if got := rowJSON(evs[0].Old); evs[0].OldKind != OldKey || got != `{"a":1,"b":null}` || evs[0].Key != nil {
		t.Fatalf("unexpected event: %s", evs[0].JSON())
	}
}
