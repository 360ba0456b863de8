package decoder

import (
	"io"
	"slices"
)

// The kinds of a TupleColumn.
const (
	TupleNull      byte = 'n' // SQL NULL
	TupleUnchanged byte = 'u' // unchanged TOAST value: the value is not sent
	TupleText      byte = 't' // value in text format
	TupleBinary    byte = 'b' // value in binary format (pgoutput option binary)
)

// TupleColumn is one column of a TupleData: its kind and, for TupleText and
// TupleBinary, its value bytes (aliasing the parsed message).
type TupleColumn struct {
	Kind byte
	Data []byte
}

// TupleData is a row image as sent in Insert, Update and Delete messages.
type TupleData struct {
	Columns []TupleColumn
}

// Insert is the message for one inserted row.
type Insert struct {
	RelationID uint32
	New        TupleData
}

// Kind returns KindInsert.
func (*Insert) Kind() Kind { return KindInsert }

// Update is the message for one updated row. OldKind is 'K' when Old holds the old
// replica identity key (the key changed), 'O' when it holds the whole old row (REPLICA
// IDENTITY FULL), and 0 when no old image was sent (Old is nil).
type Update struct {
	RelationID uint32
	OldKind    byte
	Old        *TupleData
	New        TupleData
}

// Kind returns KindUpdate.
func (*Update) Kind() Kind { return KindUpdate }

// Delete is the message for one deleted row. OldKind is 'K' (Old holds the replica
// identity key; other columns are sent as nulls) or 'O' (the whole old row).
type Delete struct {
	RelationID uint32
	OldKind    byte
	Old        *TupleData
}

// Kind returns KindDelete.
func (*Delete) Kind() Kind { return KindDelete }

// readTuple reads a TupleData into cols (reused), returning the extended slice.
func readTuple(r *reader, cols []TupleColumn) []TupleColumn {
	n := int(r.uint16("tuple column count"))
	if r.err != nil {
		return cols[:0]
	}
	if n > r.remaining() { // every column takes at least its kind byte
		r.fail("tuple column count exceeds message length", io.ErrUnexpectedEOF)
		return cols[:0]
	}
	cols = slices.Grow(cols[:0], n)
	for range n {
		kind := r.uint8("tuple column kind")
		var data []byte
		switch kind {
		case TupleNull, TupleUnchanged:
		case TupleText, TupleBinary:
			size := int32(r.uint32("tuple value length"))
			if r.err == nil && (size < 0 || int(size) > r.remaining()) {
				r.fail("tuple value length exceeds message length", io.ErrUnexpectedEOF)
			}
			data = r.bytes(int(size), "tuple value")
		default:
			if r.err == nil {
				r.off--
				r.fail("unknown tuple column kind", nil)
			}
		}
		if r.err != nil {
			return cols[:0]
		}
		cols = append(cols, TupleColumn{Kind: kind, Data: data})
	}
	return cols
}

func parseInsert(r *reader, cols []TupleColumn) (uint32, []TupleColumn) {
	relID := r.uint32("relation OID")
	if b := r.uint8("tuple type"); r.err == nil && b != 'N' {
		r.off--
		r.fail("expected new tuple ('N')", nil)
	}
	cols = readTuple(r, cols)
	r.end()
	return relID, cols
}

func parseUpdate(r *reader, oldCols, newCols []TupleColumn) (relID uint32, oldKind byte, _, _ []TupleColumn) {
	relID = r.uint32("relation OID")
	b := r.uint8("tuple type")
	if b == 'K' || b == 'O' {
		oldKind = b
		oldCols = readTuple(r, oldCols)
		b = r.uint8("tuple type")
	}
	if r.err == nil && b != 'N' {
		r.off--
		r.fail("expected new tuple ('N')", nil)
	}
	newCols = readTuple(r, newCols)
	r.end()
	return relID, oldKind, oldCols, newCols
}

func parseDelete(r *reader, cols []TupleColumn) (relID uint32, oldKind byte, _ []TupleColumn) {
	relID = r.uint32("relation OID")
	oldKind = r.uint8("tuple type")
	if r.err == nil && oldKind != 'K' && oldKind != 'O' {
		r.off--
		r.fail("expected old key ('K') or old tuple ('O')", nil)
	}
	cols = readTuple(r, cols)
	r.end()
	return relID, oldKind, cols
}
