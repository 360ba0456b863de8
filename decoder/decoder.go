package decoder

import (
	"fmt"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Options configures a Decoder. The zero value is usable.
type Options struct {
	// KeyColumns, when set, names the primary key columns of a relation whose replica
	// identity is FULL. pgoutput then flags every column as key, so without the hook
	// Event.Key holds every column. The hook is called once per Relation message, from
	// Decode; names that are not columns are ignored, and an empty result keeps the
	// flagged columns.
	KeyColumns func(rel *Relation) []string
	// MaxEventBytes bounds the decoded values (old and new images, or the content of a
	// logical decoding message) of one change. A change over the bound is not decoded
	// further and gives a *TooLargeError. 0 means no bound.
	MaxEventBytes int
}

// Decoder decodes the pgoutput messages of one replication session into events. It
// keeps the session's state: the relation cache (Relation messages), the type cache
// (Type messages) and the transaction being decoded (Begin, Origin, ordinals).
//
// A Decoder is not safe for concurrent use: the goroutine that reads the replication
// connection owns it. Events it returns own their memory and are safe to hand to other
// goroutines.
type Decoder struct {
	opts      Options
	relations map[uint32]*Relation
	types     map[uint32]Type

	inTx   bool
	commit Commit
	asm    Assembler // ids, origin and Begin of the current (or last) transaction

	// Tuples parsed from the current message, reused from message to message.
	oldCols, newCols []TupleColumn
}

// New returns a Decoder with empty caches, outside any transaction.
func New(opts Options) *Decoder {
	return &Decoder{
		opts:      opts,
		relations: make(map[uint32]*Relation),
		types:     make(map[uint32]Type),
		asm:       Assembler{maxBytes: opts.MaxEventBytes},
	}
}

// Decode decodes one pgoutput message: data is the WALData of an XLogData message and
// walStart its WALStart. It appends the events the message produced to dst and returns
// the extended slice and the message kind (0 when data is empty).
//
// Insert, Update and Delete produce one event each, Truncate one event per truncated
// relation, a logical decoding Message one event; Begin, Commit, Origin, Relation and
// Type produce none but update the Decoder's state, which the caller observes through
// InTransaction, Begin, LastCommit and Ordinal. Events keep no reference to data.
//
// Errors: a *Error means the message is corrupt or out of protocol order and the session
// must stop. A *ValueError or *TooLargeError concerns one change only: the message was
// consumed, the change's ordinal used, no event appended, and decoding may go on.
func (d *Decoder) Decode(walStart lsn.LSN, data []byte, dst []*Event) ([]*Event, Kind, error) {
	r := newReader(data)
	kind := Kind(r.uint8("message type"))
	var err error
	switch kind {
	case KindBegin:
		m := parseBegin(&r)
		if r.err == nil && d.inTx {
			r.protocol("Begin inside a transaction that has not committed")
		}
		if r.err == nil {
			d.inTx = true
			d.asm.Begin(m)
		}
	case KindCommit:
		m := parseCommit(&r)
		switch {
		case r.err != nil:
		case !d.inTx:
			r.protocol("Commit outside a transaction")
		case m.CommitLSN != d.asm.begin.FinalLSN:
			r.protocol(fmt.Sprintf("commit LSN %s differs from the final LSN %s of Begin", m.CommitLSN, d.asm.begin.FinalLSN))
		default:
			d.inTx, d.commit = false, m
		}
	case KindOrigin:
		m := parseOrigin(&r)
		if r.err == nil && !d.inTx {
			r.protocol("Origin outside a transaction")
		}
		if r.err == nil {
			d.asm.origin = m.Name
		}
	case KindRelation:
		if rel := parseRelation(&r); rel != nil {
			rel.prepare(d.opts.KeyColumns)
			d.relations[rel.ID] = rel
		}
	case KindType:
		if m := parseType(&r); r.err == nil {
			d.types[m.ID] = m
		}
	case KindInsert:
		c := rowChange{at: walStart, op: OpInsert}
		var relID uint32
		relID, d.newCols = parseInsert(&r, d.newCols)
		c.newCols = d.newCols
		dst, err = d.change(&r, relID, &c, dst)
	case KindUpdate:
		c := rowChange{at: walStart, op: OpUpdate}
		var relID uint32
		relID, c.oldKind, d.oldCols, d.newCols = parseUpdate(&r, d.oldCols, d.newCols)
		c.oldCols, c.newCols = d.oldCols, d.newCols
		dst, err = d.change(&r, relID, &c, dst)
	case KindDelete:
		c := rowChange{at: walStart, op: OpDelete}
		var relID uint32
		relID, c.oldKind, d.oldCols = parseDelete(&r, d.oldCols)
		c.oldCols = d.oldCols
		dst, err = d.change(&r, relID, &c, dst)
	case KindTruncate:
		m := parseTruncate(&r)
		dst, err = d.truncate(&r, walStart, &m, dst)
	case KindMessage:
		m := parseMessage(&r)
		dst, err = d.message(&r, walStart, &m, dst)
	default:
		if r.err == nil {
			r.off = 0
			r.fail("unsupported message type (pgoutput protocol version 1 expected)", nil)
		}
	}
	if r.err != nil {
		return dst, kind, r.err
	}
	return dst, kind, err
}

// protocol records a message that is well formed but out of protocol order.
func (r *reader) protocol(reason string) {
	r.off = 0
	r.fail(reason, nil)
}

// InTransaction reports whether a Begin has been decoded and its Commit not yet.
func (d *Decoder) InTransaction() bool { return d.inTx }

// Begin returns the Begin of the current transaction, or of the last one after its
// Commit (the zero Begin before the first).
func (d *Decoder) Begin() Begin { return d.asm.begin }

// LastCommit returns the last Commit decoded (the zero Commit before the first). After
// Decode returns KindCommit it is the Commit of the transaction just ended: EndLSN is the
// position to confirm once the transaction's events are settled.
func (d *Decoder) LastCommit() Commit { return d.commit }

// Ordinal returns the number of event ordinals given out in the current transaction, or
// in the last one after its Commit. It counts every change, including those that failed
// with a *ValueError or *TooLargeError, so it is the ordinal of the last change sent.
func (d *Decoder) Ordinal() uint32 { return d.asm.ord }

// Origin returns the replication origin of the current transaction ("" when none).
func (d *Decoder) Origin() string { return d.asm.origin }

// Relation returns the cached descriptor of relation id, or nil. The Relation is shared
// and must not be modified.
func (d *Decoder) Relation(id uint32) *Relation { return d.relations[id] }

// TypeName returns the name of type oid: "int4" for a built-in type the decoder knows,
// "namespace.name" for a type learnt from a Type message, "" otherwise.
func (d *Decoder) TypeName(oid uint32) string {
	if t, ok := d.types[oid]; ok {
		if t.Namespace == "" {
			return t.Name
		}
		return t.Namespace + "." + t.Name
	}
	return lookupType(oid).name
}
