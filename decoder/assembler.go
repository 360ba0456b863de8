package decoder

import (
	"errors"
	"fmt"
	"slices"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Assembler turns the decoded values of rows into events and gives each event its id:
// the commit LSN of its transaction and its ordinal in it. A Decoder holds one for the
// stream. A reader of table rows (a snapshot) holds its own and builds its events with
// Read, which decodes values exactly as the stream does.
//
// An Assembler is not safe for concurrent use. Events it returns own their memory and
// are safe to hand to other goroutines. The zero Assembler is usable: no bound on the
// size of events, and ids {0/0, n} until Begin.
type Assembler struct {
	maxBytes int   // Options.MaxEventBytes
	begin    Begin // the transaction the ids belong to
	origin   string
	ord      uint32 // ordinals given out since begin

	// Scratch space reused from row to row.
	oldVals, newVals []span
	cols             []TupleColumn // the values given to Read
	values           valueDecoder
	scratch          []byte
}

// NewAssembler returns an Assembler outside any transaction. Of opts it uses
// MaxEventBytes (a row whose decoded values exceed it gives a *TooLargeError); the key
// of each event comes from its Relation, so KeyColumns does not apply.
func NewAssembler(opts Options) *Assembler {
	return &Assembler{maxBytes: opts.MaxEventBytes}
}

// Begin starts the ids of a new transaction: the events built next get the ids
// {b.FinalLSN, 1}, {b.FinalLSN, 2}, and so on, with b's Xid and CommitTime, and no
// origin.
func (a *Assembler) Begin(b Begin) {
	a.begin, a.origin, a.ord = b, "", 0
}

// Ordinal returns the number of ordinals given out since Begin: the ordinal of the last
// event built, counting the rows refused with a *ValueError or *TooLargeError.
func (a *Assembler) Ordinal() uint32 { return a.ord }

// next gives out the next id.
func (a *Assembler) next() lsn.Position { return a.take(1) }

// take gives out n consecutive ids and returns the first.
func (a *Assembler) take(n uint32) lsn.Position {
	first := lsn.Position{Commit: a.begin.FinalLSN, Ord: a.ord + 1}
	a.ord += n
	return first
}

// Read builds the event of one row read from a table rather than from the stream (a
// snapshot row): Op is OpRead, New holds every column, Key the key columns of rel (as
// for a streamed INSERT of the row), Old is nil. Its id is the next one of the
// transaction started with Begin, its LSN the Begin's FinalLSN, and its Xid, CommitTime
// those of the Begin.
//
// rel must come from NewRelation (or a Decoder). values holds the text form of each
// column of rel, in order, as PostgreSQL's output functions write it (what a query in
// the text format returns, with the session settings the stream uses: DateStyle ISO,
// IntervalStyle postgres, extra_float_digits 1); a nil value is SQL NULL, an empty
// non-nil one the empty text. The values are decoded exactly as the values of streamed
// changes, and the event keeps no reference to them.
//
// The ids are only stable and distinct from streamed ones if the caller makes them so:
// Begin with a FinalLSN at which no streamed transaction commits, and read the rows in
// the same order on every run.
//
// Errors: a *ValueError or *TooLargeError concerns this row only and, as in the stream,
// uses its ordinal. Any other error (values not matching rel's columns, a Relation not
// prepared) is the caller's mistake and uses no ordinal.
func (a *Assembler) Read(rel *Relation, values [][]byte) (*Event, error) {
	if rel == nil || len(rel.types) != len(rel.Columns) {
		return nil, errors.New("decoder: read of a relation not built by NewRelation")
	}
	if len(values) != len(rel.Columns) {
		return nil, fmt.Errorf("decoder: read of %d values for %q.%q, which has %d columns", len(values), rel.Namespace, rel.Name, len(rel.Columns))
	}
	a.cols = slices.Grow(a.cols[:0], len(values))
	for _, v := range values {
		if v == nil {
			a.cols = append(a.cols, TupleColumn{Kind: TupleNull})
		} else {
			a.cols = append(a.cols, TupleColumn{Kind: TupleText, Data: v})
		}
	}
	c := rowChange{rel: rel, at: a.begin.FinalLSN, op: OpRead, newCols: a.cols}
	ev, err := a.build(&c)
	clear(a.cols) // hold no reference to the caller's values
	return ev, err
}
