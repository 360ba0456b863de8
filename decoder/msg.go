package decoder

import (
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Kind is the type byte of a pgoutput message ('B' for Begin).
type Kind byte

// The pgoutput protocol version 1 message kinds.
const (
	KindBegin    Kind = 'B'
	KindCommit   Kind = 'C'
	KindOrigin   Kind = 'O'
	KindRelation Kind = 'R'
	KindType     Kind = 'Y'
	KindInsert   Kind = 'I'
	KindUpdate   Kind = 'U'
	KindDelete   Kind = 'D'
	KindTruncate Kind = 'T'
	KindMessage  Kind = 'M'
)

// String returns the PostgreSQL name of the message kind ("Begin"), or "Unknown(0x..)".
func (k Kind) String() string {
	switch k {
	case KindBegin:
		return "Begin"
	case KindCommit:
		return "Commit"
	case KindOrigin:
		return "Origin"
	case KindRelation:
		return "Relation"
	case KindType:
		return "Type"
	case KindInsert:
		return "Insert"
	case KindUpdate:
		return "Update"
	case KindDelete:
		return "Delete"
	case KindTruncate:
		return "Truncate"
	case KindMessage:
		return "Message"
	}
	const hex = "0123456789abcdef"
	return "Unknown(0x" + string([]byte{hex[k>>4], hex[k&0xF]}) + ")"
}

// Msg is one parsed pgoutput message: *Begin, *Commit, *Origin, *Relation, *Type,
// *Insert, *Update, *Delete, *Truncate or *Message. (The name Message belongs to the
// content of a logical decoding message, which events carry.)
type Msg interface {
	// Kind returns the message's type byte.
	Kind() Kind
}

// Parse parses one pgoutput protocol version 1 message (the WALData of an XLogData
// message) without any session state. Byte slices in the result (tuple values, message
// content) alias data; strings are copies. Errors are of type *Error.
func Parse(data []byte) (Msg, error) {
	r := newReader(data)
	m := parse(&r)
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

func parse(r *reader) Msg {
	switch Kind(r.uint8("message type")) {
	case KindBegin:
		m := parseBegin(r)
		return &m
	case KindCommit:
		m := parseCommit(r)
		return &m
	case KindOrigin:
		m := parseOrigin(r)
		return &m
	case KindRelation:
		return parseRelation(r)
	case KindType:
		m := parseType(r)
		return &m
	case KindInsert:
		m := &Insert{}
		m.RelationID, m.New.Columns = parseInsert(r, nil)
		return m
	case KindUpdate:
		m := &Update{}
		var old []TupleColumn
		m.RelationID, m.OldKind, old, m.New.Columns = parseUpdate(r, nil, nil)
		if m.OldKind != 0 {
			m.Old = &TupleData{Columns: old}
		}
		return m
	case KindDelete:
		m := &Delete{}
		var old []TupleColumn
		m.RelationID, m.OldKind, old = parseDelete(r, nil)
		m.Old = &TupleData{Columns: old}
		return m
	case KindTruncate:
		m := parseTruncate(r)
		return &m
	case KindMessage:
		m := parseMessage(r)
		return &m
	}
	if r.err == nil {
		r.off = 0
		r.fail("unsupported message type (pgoutput protocol version 1 expected)", nil)
	}
	return nil
}

// pgEpochUnix is 2000-01-01T00:00:00Z in Unix seconds, the epoch of PostgreSQL timestamps.
const pgEpochUnix = 946684800

// pgTime converts microseconds since 2000-01-01 UTC to a time.Time in UTC.
func pgTime(us int64) time.Time {
	sec, rem := us/1e6, us%1e6
	if rem < 0 {
		sec--
		rem += 1e6
	}
	return time.Unix(sec+pgEpochUnix, rem*1e3).UTC()
}

func (r *reader) lsn(what string) lsn.LSN { return lsn.LSN(r.uint64(what)) }

func (r *reader) time(what string) time.Time { return pgTime(int64(r.uint64(what))) }
