package decoder

import (
	"fmt"
	"io"
	"slices"
	"unicode/utf8"
)

// Column describes one column of a Relation message.
type Column struct {
	Name    string
	TypeOID uint32
	TypeMod int32
	Key     bool // part of the replica identity key (every column under REPLICA IDENTITY FULL)
}

// Relation is the descriptor of a published table as sent in a Relation message. A
// Relation is immutable: a new Relation message for the same OID makes a new value.
type Relation struct {
	ID              uint32
	Namespace       string
	Name            string
	ReplicaIdentity byte // 'd' default, 'n' nothing, 'f' full, 'i' index
	Columns         []Column
	// Names holds the column names in order; rows decoded with this relation share it.
	Names []string

	// Filled by the Decoder when it caches the relation (zero after Parse).
	types      []typeInfo // how to decode each column's values
	identIdx   []int      // columns flagged as replica identity key (the 'K' tuple)
	identNames []string
	keyIdx     []int // columns of Event.Key: identIdx, or the KeyColumns hook under FULL
	keyNames   []string
	badName    string // a schema, table or column name that is not valid UTF-8
	hasBadName bool
}

// The replica identity settings of a Relation (pg_class.relreplident).
const (
	IdentityDefault byte = 'd'
	IdentityNothing byte = 'n'
	IdentityFull    byte = 'f'
	IdentityIndex   byte = 'i'
)

// Kind returns KindRelation.
func (*Relation) Kind() Kind { return KindRelation }

// minColumnBytes is the smallest encoding of one column in a Relation message: flags,
// an empty name's NUL, type OID and type modifier.
const minColumnBytes = 1 + 1 + 4 + 4

func parseRelation(r *reader) *Relation {
	m := &Relation{}
	m.ID = r.uint32("relation OID")
	m.Namespace = string(r.cstring("namespace"))
	m.Name = string(r.cstring("relation name"))
	m.ReplicaIdentity = r.uint8("replica identity")
	n := int(r.uint16("column count"))
	if r.err != nil {
		return nil
	}
	if n*minColumnBytes > r.remaining() {
		r.fail("column count exceeds message length", io.ErrUnexpectedEOF)
		return nil
	}
	m.Columns = make([]Column, n)
	m.Names = make([]string, n)
	for i := range m.Columns {
		c := &m.Columns[i]
		c.Key = r.uint8("column flags")&1 != 0
		c.Name = string(r.cstring("column name"))
		c.TypeOID = r.uint32("column type OID")
		c.TypeMod = int32(r.uint32("column type modifier"))
		m.Names[i] = c.Name
	}
	r.end()
	if r.err != nil {
		return nil
	}
	return m
}

// NewRelation returns the descriptor of a table learnt from the catalog rather than
// from a Relation message, for Assembler.Read. Of desc it uses ID, Namespace, Name,
// ReplicaIdentity and Columns (Name, TypeOID, TypeMod, and Key for the columns of the
// replica identity key, as pgoutput flags them: every column under REPLICA IDENTITY
// FULL); Names is derived from Columns, and Columns is copied.
//
// key plays the part of Options.KeyColumns: under REPLICA IDENTITY FULL it names the
// columns of Event.Key (the primary key), otherwise it is not used and the Key columns
// are the key. The Relation thus decodes values and picks keys exactly as one decoded
// from a Relation message with the same columns by a Decoder whose KeyColumns returns
// key. It is an error for key to name a column the table does not have.
func NewRelation(desc Relation, key []string) (*Relation, error) {
	rel := &Relation{ID: desc.ID, Namespace: desc.Namespace, Name: desc.Name,
		ReplicaIdentity: desc.ReplicaIdentity, Columns: slices.Clone(desc.Columns)}
	rel.Names = make([]string, len(rel.Columns))
	for i, c := range rel.Columns {
		rel.Names[i] = c.Name
	}
	for _, k := range key {
		if !slices.Contains(rel.Names, k) {
			return nil, fmt.Errorf("decoder: key column %q is not a column of %q.%q", k, rel.Namespace, rel.Name)
		}
	}
	rel.prepare(func(*Relation) []string { return key })
	return rel, nil
}

// prepare fills the derived fields of a relation the Decoder is about to cache.
func (rel *Relation) prepare(keyColumns func(*Relation) []string) {
	rel.types = make([]typeInfo, len(rel.Columns))
	for i, c := range rel.Columns {
		rel.types[i] = lookupType(c.TypeOID)
		if c.Key {
			rel.identIdx = append(rel.identIdx, i)
			rel.identNames = append(rel.identNames, c.Name)
		}
	}
	rel.keyIdx, rel.keyNames = rel.identIdx, rel.identNames
	if keyColumns != nil && rel.ReplicaIdentity == IdentityFull {
		var idx []int
		var names []string
		for _, name := range keyColumns(rel) {
			for i, c := range rel.Columns {
				if c.Name == name {
					idx = append(idx, i)
					names = append(names, c.Name)
					break
				}
			}
		}
		if len(idx) > 0 {
			rel.keyIdx, rel.keyNames = idx, names
		}
	}
	for _, s := range append([]string{rel.Namespace, rel.Name}, rel.Names...) {
		if !utf8.ValidString(s) {
			rel.badName, rel.hasBadName = s, true
			break
		}
	}
}
