package decoder

import (
	"encoding/binary"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Builders of pgoutput messages for unit tests.

func be16(b []byte, v int) []byte    { return binary.BigEndian.AppendUint16(b, uint16(v)) }
func be32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func be64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
func cstr(b []byte, s string) []byte { return append(append(b, s...), 0) }

func mkBegin(final lsn.LSN, xid uint32) []byte {
	b := be64([]byte{'B'}, uint64(final))
	b = be64(b, 789000000) // 2000-01-01T00:13:09Z
	return be32(b, xid)
}

func mkCommit(commit, end lsn.LSN) []byte {
	b := be64([]byte{'C', 0}, uint64(commit))
	b = be64(b, uint64(end))
	return be64(b, 789000000)
}

func mkOrigin(name string) []byte { return cstr(be64([]byte{'O'}, 0xABCDEF), name) }

func mkType(id uint32, ns, name string) []byte {
	return cstr(cstr(be32([]byte{'Y'}, id), ns), name)
}

// col describes a Relation column for mkRelation.
type col struct {
	name string
	oid  uint32
	key  bool
}

func mkRelation(id uint32, ns, name string, ident byte, cols ...col) []byte {
	b := cstr(cstr(be32([]byte{'R'}, id), ns), name)
	b = be16(append(b, ident), len(cols))
	for _, c := range cols {
		flags := byte(0)
		if c.key {
			flags = 1
		}
		b = cstr(append(b, flags), c.name)
		b = be32(be32(b, c.oid), 0xffffffff)
	}
	return b
}

// Tuple column constructors.
func txt(s string) TupleColumn  { return TupleColumn{Kind: TupleText, Data: []byte(s)} }
func bin(b ...byte) TupleColumn { return TupleColumn{Kind: TupleBinary, Data: b} }

var (
	null      = TupleColumn{Kind: TupleNull}
	unchanged = TupleColumn{Kind: TupleUnchanged}
)

func tuple(b []byte, cols []TupleColumn) []byte {
	b = be16(b, len(cols))
	for _, c := range cols {
		b = append(b, c.Kind)
		if c.Kind == TupleText || c.Kind == TupleBinary {
			b = append(be32(b, uint32(len(c.Data))), c.Data...)
		}
	}
	return b
}

func mkInsert(rel uint32, cols ...TupleColumn) []byte {
	return tuple(append(be32([]byte{'I'}, rel), 'N'), cols)
}

func mkUpdate(rel uint32, oldKind byte, old, new []TupleColumn) []byte {
	b := be32([]byte{'U'}, rel)
	if oldKind != 0 {
		b = tuple(append(b, oldKind), old)
	}
	return tuple(append(b, 'N'), new)
}

func mkDelete(rel uint32, oldKind byte, old ...TupleColumn) []byte {
	return tuple(append(be32([]byte{'D'}, rel), oldKind), old)
}

func mkTruncate(opts byte, rels ...uint32) []byte {
	b := append(be32([]byte{'T'}, uint32(len(rels))), opts)
	for _, r := range rels {
		b = be32(b, r)
	}
	return b
}

func mkMessage(transactional bool, at lsn.LSN, prefix string, content []byte) []byte {
	flags := byte(0)
	if transactional {
		flags = 1
	}
	b := cstr(be64([]byte{'M', flags}, uint64(at)), prefix)
	return append(be32(b, uint32(len(content))), content...)
}
