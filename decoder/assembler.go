package decoder

import "github.com/fraiseql/fraiseql-observers/lsn"

// Assembler turns the decoded values of rows into events and gives each event its id:
// the commit LSN of its transaction and its ordinal in it. A Decoder holds one for the
// stream.
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
