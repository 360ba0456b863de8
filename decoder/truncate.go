package decoder

import (
	"io"

	"fmt"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// The option bits of a Truncate message.
const (
	TruncateCascade         uint8 = 1 // TRUNCATE ... CASCADE
	TruncateRestartIdentity uint8 = 2 // TRUNCATE ... RESTART IDENTITY
)

// Truncate is the message for one TRUNCATE statement; it lists every truncated
// published relation (those named and those reached by CASCADE).
type Truncate struct {
	Options     uint8
	RelationIDs []uint32
}

// Kind returns KindTruncate.
func (*Truncate) Kind() Kind { return KindTruncate }

// Cascade reports whether the statement used CASCADE.
func (m *Truncate) Cascade() bool { return m.Options&TruncateCascade != 0 }

// RestartIdentity reports whether the statement used RESTART IDENTITY.
func (m *Truncate) RestartIdentity() bool { return m.Options&TruncateRestartIdentity != 0 }

func parseTruncate(r *reader) Truncate {
	var m Truncate
	n := int32(r.uint32("relation count"))
	m.Options = r.uint8("options")
	if r.err != nil {
		return m
	}
	if n < 0 || int(n) > r.remaining()/4 {
		r.off -= 5
		r.fail("relation count exceeds message length", io.ErrUnexpectedEOF)
		return m
	}
	m.RelationIDs = make([]uint32, n)
	for i := range m.RelationIDs {
		m.RelationIDs[i] = r.uint32("relation OID")
	}
	r.end()
	return m
}

// truncate builds one event per relation of a Truncate message parsed by r. If a
// relation name is not valid UTF-8 the whole message gives a *ValueError (with the id
// of its first change) and no event; the ordinals of all its relations are used.
func (d *Decoder) truncate(r *reader, walStart lsn.LSN, m *Truncate, dst []*Event) ([]*Event, error) {
	if r.err != nil {
		return dst, nil
	}
	if !d.inTx {
		r.protocol("Truncate outside a transaction")
		return dst, nil
	}
	for _, id := range m.RelationIDs {
		if d.relations[id] == nil {
			r.protocol(fmt.Sprintf("truncate of relation %d before its Relation message", id))
			return dst, nil
		}
	}
	first := d.asm.take(uint32(len(m.RelationIDs)))
	for _, id := range m.RelationIDs {
		if rel := d.relations[id]; rel.hasBadName || !utf8.ValidString(d.asm.origin) {
			return dst, &ValueError{ID: first, LSN: walStart, Schema: rel.Namespace, Table: rel.Name, Err: ErrInvalidUTF8}
		}
	}
	evs := make([]Event, len(m.RelationIDs))
	for i, id := range m.RelationIDs {
		rel := d.relations[id]
		ev := &evs[i]
		ev.ID = lsn.Position{Commit: first.Commit, Ord: first.Ord + uint32(i)}
		ev.LSN, ev.Op = walStart, OpTruncate
		ev.Xid, ev.CommitTime, ev.Origin = d.asm.begin.Xid, d.asm.begin.CommitTime, d.asm.origin
		ev.Schema, ev.Table, ev.RelationID, ev.Relation = rel.Namespace, rel.Name, rel.ID, rel
		dst = append(dst, ev)
	}
	return dst, nil
}
