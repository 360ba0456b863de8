package decoder_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// The replication session calls Decode for every XLogData message, in stream order, and
// hands the events on; it confirms a transaction's EndLSN once its events are settled.
// Here the messages of one transaction (as pgoutput sends them for
// INSERT INTO public.orders VALUES (1, 'shipped', 9.90)) are built by hand.
func ExampleDecoder() {
	stream := [][]byte{
		beginMsg(0x16B3748, 731),
		relationMsg(16385, "public", "orders", []column{{"id", 20, true}, {"status", 25, false}, {"total", 1700, false}}),
		insertMsg(16385, "1", "shipped", "9.90"),
		commitMsg(0x16B3748, 0x16B3778),
	}
	d := decoder.New(decoder.Options{})
	var evs []*decoder.Event
	for i, data := range stream {
		var kind decoder.Kind
		var err error
		evs, kind, err = d.Decode(lsn.LSN(0x16B3700+16*i), data, evs[:0])
		var ve *decoder.ValueError
		switch {
		case errors.As(err, &ve):
			fmt.Println("dead-letter", ve.ID, ve) // one change refused; go on
		case err != nil:
			fmt.Println("stop:", err) // a corrupt stream: stop the session
			return
		case kind == decoder.KindCommit:
			fmt.Println("commit, confirm", d.LastCommit().EndLSN, "once settled")
		}
		for _, ev := range evs {
			fmt.Println(ev.ID, ev.Op, ev.Schema+"."+ev.Table, string(ev.New.AppendJSON(nil)))
		}
	}
	// Output:
	// 0/16B3748:1 INSERT public.orders {"id":1,"status":"shipped","total":9.90}
	// commit, confirm 0/16B3778 once settled
}

// A reader of table rows (a snapshot) describes the table from the catalog and reads
// its rows in the text format; Read turns each row into an event typed exactly like a
// streamed one.
func ExampleAssembler_Read() {
	rel, err := decoder.NewRelation(decoder.Relation{
		ID: 16385, Namespace: "public", Name: "orders", ReplicaIdentity: decoder.IdentityDefault,
		Columns: []decoder.Column{
			{Name: "id", TypeOID: 20, Key: true}, // int8, the replica identity key
			{Name: "status", TypeOID: 25},        // text
			{Name: "total", TypeOID: 1700},       // numeric
			{Name: "meta", TypeOID: 3802},        // jsonb
		},
	}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	a := decoder.NewAssembler(decoder.Options{})
	// The ids of the rows: {0/16B3749, 1}, {0/16B3749, 2}, ...
	a.Begin(decoder.Begin{FinalLSN: 0x16B3749, CommitTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	ev, err := a.Read(rel, [][]byte{[]byte("1"), []byte("shipped"), []byte("9.90"), nil})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(ev.JSON()))
	// Output:
	// {"id":"0/16B3749:1","lsn":"0/16B3749","commit_lsn":"0/16B3749","xid":0,"commit_time":"2026-01-02T03:04:05Z","schema":"public","table":"orders","op":"READ","key":{"id":1},"new":{"id":1,"status":"shipped","total":9.90,"meta":null},"old":null,"old_kind":"none","changed":null,"unavailable":null}
}

// Builders of pgoutput protocol version 1 messages (see PostgreSQL's "Logical
// Replication Message Formats").

type column struct {
	name string
	oid  uint32
	key  bool
}

var be = binary.BigEndian

func beginMsg(finalLSN uint64, xid uint32) []byte {
	b := be.AppendUint64([]byte{'B'}, finalLSN)
	b = be.AppendUint64(b, 0) // commit time: microseconds since 2000-01-01
	return be.AppendUint32(b, xid)
}

func commitMsg(commitLSN, endLSN uint64) []byte {
	b := be.AppendUint64([]byte{'C', 0}, commitLSN)
	b = be.AppendUint64(b, endLSN)
	return be.AppendUint64(b, 0)
}

func relationMsg(id uint32, namespace, name string, cols []column) []byte {
	b := be.AppendUint32([]byte{'R'}, id)
	b = append(append(b, namespace...), 0)
	b = append(append(b, name...), 0)
	b = append(b, decoder.IdentityDefault)
	b = be.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		flags := byte(0)
		if c.key {
			flags = 1
		}
		b = append(append(append(b, flags), c.name...), 0)
		b = be.AppendUint32(be.AppendUint32(b, c.oid), 0xFFFFFFFF) // type OID, no modifier
	}
	return b
}

func insertMsg(relID uint32, values ...string) []byte {
	b := append(be.AppendUint32([]byte{'I'}, relID), 'N')
	b = be.AppendUint16(b, uint16(len(values)))
	for _, v := range values {
		b = append(be.AppendUint32(append(b, decoder.TupleText), uint32(len(v))), v...)
	}
	return b
}
