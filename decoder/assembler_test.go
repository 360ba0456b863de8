package decoder

import (
	"errors"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// typedCols covers every value kind of the decoder, an array, a type it does not know
// and a key that is not the first column.
var typedCols = []col{
	{"t", 25, false}, {"id", 20, true}, {"n", 1700, false}, {"f", 701, false}, {"ok", 16, false},
	{"jb", 3802, false}, {"raw", 17, false}, {"at", 1184, false}, {"ts", 1114, false}, {"tz", 1266, false},
	{"tags", 1009, false}, {"mood", 90000, false}, {"nothing", 23, false},
}

// typedValues are text values of typedCols as PostgreSQL writes them (nil is NULL).
var typedValues = [][]byte{
	[]byte("caf\u00e9 \"quoted\"\n"), []byte("9223372036854775807"), []byte("123.4500"), []byte("NaN"), []byte("t"),
	[]byte(`{"b": [1, 2.50], "a": "x y"}`), []byte(`\x00ff10`), []byte("2024-02-29 13:45:00.123456+01:30"),
	[]byte("1999-12-31 23:59:59"), []byte("10:00:00-05"), []byte(`{a,"b c",NULL}`), []byte("happy"), nil,
}

// descOf returns the Relation fields a catalog gives for the columns.
func descOf(id uint32, ident byte, cols []col) Relation {
	d := Relation{ID: id, Namespace: "public", Name: "typed", ReplicaIdentity: ident}
	for _, c := range cols {
		d.Columns = append(d.Columns, Column{Name: c.name, TypeOID: c.oid, TypeMod: -1, Key: c.key})
	}
	return d
}

// TestReadLikeStream checks that a row read with Assembler.Read is the event a streamed
// INSERT of the same row gives, but for the op and the id: same key, same values, same
// JSON. Under REPLICA IDENTITY FULL the key comes from NewRelation's key as it comes from
// the KeyColumns hook in the stream.
func TestReadLikeStream(t *testing.T) {
	f := func(ident byte, cols []col, key []string) {
		t.Helper()
		tuple := make([]TupleColumn, len(typedValues))
		for i, v := range typedValues {
			tuple[i] = TupleColumn{Kind: TupleText, Data: v}
			if v == nil {
				tuple[i] = null
			}
		}
		d := New(Options{KeyColumns: func(*Relation) []string { return key }})
		streamed := run(t, d, mkBegin(0x500, 7), mkRelation(40, "public", "typed", ident, cols...), mkInsert(40, tuple...))[0]

		rel, err := NewRelation(descOf(40, ident, cols), key)
		if err != nil {
			t.Fatal(err)
		}
		a := NewAssembler(Options{})
		a.Begin(Begin{FinalLSN: 0x500, Xid: 7, CommitTime: d.Begin().CommitTime})
		read, err := a.Read(rel, typedValues)
		if err != nil {
			t.Fatal(err)
		}
		if read.Op != OpRead || read.ID != (lsn.Position{Commit: 0x500, Ord: 1}) || read.LSN != 0x500 || read.Old != nil || read.OldKind != OldNone {
			t.Fatalf("unexpected read event: %s", read.JSON())
		}
		if got, want := rowJSON(read.Key), rowJSON(streamed.Key); got != want {
			t.Fatalf("unexpected key; got %s; want %s", got, want)
		}
		got := strings.Replace(string(read.JSON()), `"op":"READ"`, `"op":"INSERT"`, 1)
		want := strings.Replace(string(streamed.JSON()), `"lsn":"0/102"`, `"lsn":"0/500"`, 1)
		if got != want {
			t.Fatalf("read event differs from the streamed one;\ngot  %s\nwant %s", got, want)
		}
		if &read.New.Names[0] != &rel.Names[0] {
			t.Fatalf("row names are not shared with the relation")
		}
	}
	f(IdentityDefault, typedCols, nil)
	full := make([]col, len(typedCols))
	for i, c := range typedCols {
		full[i] = col{c.name, c.oid, true}
	}
	f(IdentityFull, full, []string{"id", "t"})
	f(IdentityFull, full, nil) // every column is the key, as in the stream
}

func TestReadIDs(t *testing.T) {
	rel, err := NewRelation(descOf(1, IdentityDefault, []col{{"id", 23, true}, {"v", 25, false}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	var a Assembler // the zero Assembler is usable
	read := func(vals ...string) (*Event, error) {
		t.Helper()
		b := make([][]byte, len(vals))
		for i, v := range vals {
			b[i] = []byte(v)
		}
		return a.Read(rel, b)
	}
	a.Begin(Begin{FinalLSN: 0x900, Xid: 3})
	ev, err := read("1", "a")
	if err != nil || ev.ID != (lsn.Position{Commit: 0x900, Ord: 1}) || ev.Xid != 3 {
		t.Fatalf("unexpected first read: %v %v", ev, err)
	}
	// A refused row uses its ordinal, as in the stream.
	_, err = read("2", "caf\xe9")
	var ve *ValueError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalidUTF8) || ve.ID.Ord != 2 || ve.Column != "v" || ve.Table != "typed" || ve.LSN != 0x900 {
		t.Fatalf("unexpected error for an invalid value; got %#v", err)
	}
	// A caller's mistake uses none.
	if _, err := read("3"); err == nil || errors.As(err, &ve) {
		t.Fatalf("unexpected error for a short row; got %v", err)
	}
	if _, err := a.Read(&Relation{Columns: rel.Columns}, [][]byte{nil, nil}); err == nil {
		t.Fatalf("Read accepted a relation not built by NewRelation")
	}
	if ev, err = read("3", "c"); err != nil || ev.ID.Ord != 3 || a.Ordinal() != 3 {
		t.Fatalf("unexpected ordinal after refused rows: %v %v", ev, err)
	}
	a.Begin(Begin{FinalLSN: 0xA00})
	if ev, err = read("4", "d"); err != nil || ev.ID != (lsn.Position{Commit: 0xA00, Ord: 1}) {
		t.Fatalf("Begin did not restart the ordinals: %v %v", ev, err)
	}
	// A NULL key column is read as null, and the empty text is not NULL.
	ev, err = a.Read(rel, [][]byte{[]byte("5"), {}})
	if err != nil || rowJSON(ev.New) != `{"id":5,"v":""}` {
		t.Fatalf("unexpected row with an empty value: %v %v", ev, err)
	}
	ev, err = a.Read(rel, [][]byte{[]byte("6"), nil})
	if err != nil || rowJSON(ev.New) != `{"id":6,"v":null}` {
		t.Fatalf("unexpected row with a NULL value: %v %v", ev, err)
	}
}

func TestReadOwnsItsBytes(t *testing.T) {
	rel, _ := NewRelation(descOf(1, IdentityDefault, []col{{"id", 23, true}, {"v", 25, false}}), nil)
	a := NewAssembler(Options{})
	vals := [][]byte{[]byte("1"), []byte("hello")}
	ev, err := a.Read(rel, vals)
	if err != nil {
		t.Fatal(err)
	}
	copy(vals[1], "XXXXX")
	if _, err := a.Read(rel, [][]byte{[]byte("2"), []byte("other")}); err != nil { // reuses the scratch space
		t.Fatal(err)
	}
	if got := rowJSON(ev.New); got != `{"id":1,"v":"hello"}` {
		t.Fatalf("event changed with the caller's values: %s", got)
	}
	for _, c := range a.cols[:cap(a.cols)] {
		if c.Data != nil {
			t.Fatalf("the assembler keeps a reference to the caller's values")
		}
	}
}

func TestReadMaxEventBytes(t *testing.T) {
	rel, _ := NewRelation(descOf(1, IdentityDefault, []col{{"id", 23, true}, {"v", 25, false}}), nil)
	a := NewAssembler(Options{MaxEventBytes: 100})
	a.Begin(Begin{FinalLSN: 0x900})
	_, err := a.Read(rel, [][]byte{[]byte("1"), []byte(strings.Repeat("x", 200))})
	var te *TooLargeError
	if !errors.As(err, &te) || te.Limit != 100 || te.ID != (lsn.Position{Commit: 0x900, Ord: 1}) || te.Table != "typed" {
		t.Fatalf("unexpected error; got %#v", err)
	}
	if ev, err := a.Read(rel, [][]byte{[]byte("1"), []byte("small")}); err != nil || ev.ID.Ord != 2 {
		t.Fatalf("the assembler did not go on after a TooLargeError: %v %v", ev, err)
	}
}

func TestNewRelation(t *testing.T) {
	desc := descOf(1, IdentityFull, []col{{"id", 23, true}, {"v", 25, true}})
	if _, err := NewRelation(desc, []string{"id", "nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unexpected error for an unknown key column; got %v", err)
	}
	rel, err := NewRelation(desc, []string{"v"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rel.Names, ",") != "id,v" || strings.Join(rel.keyNames, ",") != "v" || strings.Join(rel.identNames, ",") != "id,v" {
		t.Fatalf("unexpected relation: names %v key %v identity %v", rel.Names, rel.keyNames, rel.identNames)
	}
	desc.Columns[0].Name = "changed"
	if rel.Columns[0].Name != "id" {
		t.Fatalf("NewRelation did not copy the columns")
	}
	// Built again from a prepared relation: its derived fields are not carried over.
	again, err := NewRelation(*rel, nil)
	if err != nil || strings.Join(again.keyNames, ",") != "id,v" || len(again.identIdx) != 2 {
		t.Fatalf("unexpected relation built from a prepared one: %v %v", again.keyNames, err)
	}
}
