package decoder

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// span locates one decoded value in the scratch buffer.
type span struct{ start, end int }

// Special span starts.
const (
	spanAbsent = -2 // unchanged TOAST value not sent
	spanNull   = -1 // SQL NULL
)

var nullJSON = json.RawMessage("null")

// changeBlock allocates an event with its key, new and old rows at once.
type changeBlock struct {
	ev   Event
	rows [3]Row
}

// bigScratch is the size above which the scratch buffer is handed to the event rather
// than copied, so that a large change is not held twice.
const bigScratch = 64 << 10

// rowChange is one row change on its way to an event: an Insert, Update or Delete of the
// stream, or a row read from a table (OpRead).
type rowChange struct {
	rel     *Relation
	at      lsn.LSN // Event.LSN
	op      Op
	oldKind byte // 'O' (whole old row), 'K' (old key) or 0 (no old tuple)
	oldCols []TupleColumn
	newCols []TupleColumn // nil for OpDelete
}

// valueError returns a *ValueError about column col of the change with id id.
func (c *rowChange) valueError(id lsn.Position, col string, err error) *ValueError {
	return &ValueError{ID: id, LSN: c.at, Schema: c.rel.Namespace, Table: c.rel.Name, Column: col, Err: err}
}

// change builds the event of an Insert, Update or Delete whose tuples were parsed by r.
func (d *Decoder) change(r *reader, relID uint32, c *rowChange, dst []*Event) ([]*Event, error) {
	if r.err != nil {
		return dst, nil
	}
	c.rel = d.relations[relID]
	switch {
	case !d.inTx:
		r.protocol("change outside a transaction")
	case c.rel == nil:
		r.protocol(fmt.Sprintf("change of relation %d before its Relation message", relID))
	case c.oldKind != 0 && len(c.oldCols) != len(c.rel.Columns):
		r.protocol(fmt.Sprintf("old tuple has %d columns, relation %d has %d", len(c.oldCols), relID, len(c.rel.Columns)))
	case c.op != OpDelete && len(c.newCols) != len(c.rel.Columns):
		r.protocol(fmt.Sprintf("new tuple has %d columns, relation %d has %d", len(c.newCols), relID, len(c.rel.Columns)))
	}
	if r.err != nil {
		return dst, nil
	}
	ev, err := d.asm.build(c)
	if err != nil {
		return dst, err
	}
	return append(dst, ev), nil
}

// build gives the change the next id and turns it into an event, in four steps: decode
// the values of its tuples, fill unchanged TOAST values of the new tuple from the old
// one, pick the key's values, and assemble the event's images. A refused change (a
// *ValueError or *TooLargeError) uses its id all the same.
func (a *Assembler) build(c *rowChange) (*Event, error) {
	id := a.next()
	if c.rel.hasBadName {
		return nil, c.valueError(id, c.rel.badName, ErrInvalidUTF8)
	}
	if !utf8.ValidString(a.origin) {
		return nil, c.valueError(id, "", fmt.Errorf("origin name: %w", ErrInvalidUTF8))
	}
	if err := a.decodeTuples(c); err != nil {
		var tl *TooLargeError
		var ve *ValueError
		switch {
		case errors.As(err, &tl):
			tl.ID, tl.LSN, tl.Schema, tl.Table = id, c.at, c.rel.Namespace, c.rel.Name
			tl.Key = a.tooLargeKey(c)
		case errors.As(err, &ve):
			ve.ID, ve.LSN, ve.Schema, ve.Table = id, c.at, c.rel.Namespace, c.rel.Name
		}
		return nil, err
	}
	unavailable := a.fillTOAST(c)
	keyVals, missing := a.keyValues(c)
	if missing != "" {
		return nil, c.valueError(id, missing, ErrKeyUnavailable)
	}
	ev := a.assemble(c, unavailable, keyVals)
	if n := ev.ValueBytes(); a.maxBytes > 0 && n > a.maxBytes {
		// The limit applies to the event as delivered: unchanged TOAST values filled
		// from the old image count twice.
		return nil, &TooLargeError{ID: id, LSN: c.at, Schema: c.rel.Namespace, Table: c.rel.Name, Size: n, Limit: a.maxBytes, Key: ev.Key}
	}
	ev.ID, ev.LSN, ev.Op = id, c.at, c.op
	ev.Xid, ev.CommitTime, ev.Origin = a.begin.Xid, a.begin.CommitTime, a.origin
	ev.Schema, ev.Table, ev.RelationID, ev.Relation = c.rel.Namespace, c.rel.Name, c.rel.ID, c.rel
	ev.Unavailable = unavailable
	return ev, nil
}

// tooLargeKey decodes the key columns alone of a change refused as too large, for
// the dead-letter item: the operator can re-read the row by it. It returns nil when a
// key value was not sent, is over 1 KiB or cannot be decoded.
func (a *Assembler) tooLargeKey(c *rowChange) *Row {
	cols := c.newCols
	if c.op == OpDelete {
		cols = c.oldCols
	}
	rel := c.rel
	if len(rel.keyIdx) == 0 || len(cols) != len(rel.Columns) {
		return nil
	}
	k := &Row{}
	for _, i := range rel.keyIdx {
		col := cols[i]
		if col.Kind == TupleNull || col.Kind == TupleUnchanged || len(col.Data) > 1024 {
			return nil
		}
		b, err := a.values.appendValue(nil, &rel.types[i], col)
		if err != nil {
			return nil
		}
		k.Names = append(k.Names, rel.Names[i])
		k.Values = append(k.Values, json.RawMessage(b))
	}
	return k
}

// decodeTuples decodes every sent value of the change's tuples into a.scratch and
// records their spans in a.oldVals and a.newVals (empty for a tuple not sent).
func (a *Assembler) decodeTuples(c *rowChange) error {
	need := 0
	for _, col := range c.oldCols {
		need += len(col.Data) + 8
	}
	for _, col := range c.newCols {
		need += len(col.Data) + 8
	}
	if limit := a.maxBytes; limit > 0 && need > 4*limit+1024 {
		need = 4*limit + 1024
	}
	a.scratch = slices.Grow(a.scratch[:0], need)
	a.oldVals, a.newVals = a.oldVals[:0], a.newVals[:0]
	var err error
	if c.oldKind != 0 {
		a.oldVals, err = a.decodeTuple(c.rel, c.oldCols, a.oldVals)
	}
	if err == nil && c.op != OpDelete {
		a.newVals, err = a.decodeTuple(c.rel, c.newCols, a.newVals)
	}
	if err != nil && cap(a.scratch) > bigScratch {
		a.scratch = nil
	}
	return err
}

// decodeTuple decodes the values of cols into a.scratch and returns their spans in vals
// (reused). Errors are a *TooLargeError or a *ValueError to be completed by the caller.
func (a *Assembler) decodeTuple(rel *Relation, cols []TupleColumn, vals []span) ([]span, error) {
	vals = slices.Grow(vals[:0], len(cols))[:len(cols)]
	limit := a.maxBytes
	for i, c := range cols {
		switch c.Kind {
		case TupleNull:
			vals[i] = span{spanNull, spanNull}
			continue
		case TupleUnchanged:
			vals[i] = span{spanAbsent, spanAbsent}
			continue
		}
		t := &rel.types[i]
		start := len(a.scratch)
		if limit > 0 && start+minJSONSize(t.kind, len(c.Data)) > limit {
			return vals, &TooLargeError{Size: start + minJSONSize(t.kind, len(c.Data)), Limit: limit}
		}
		var err error
		a.scratch, err = a.values.appendValue(a.scratch, t, c)
		if err != nil {
			return vals, &ValueError{Column: rel.Names[i], Err: err}
		}
		if limit > 0 && len(a.scratch) > limit {
			return vals, &TooLargeError{Size: len(a.scratch), Limit: limit}
		}
		vals[i] = span{start, len(a.scratch)}
	}
	return vals, nil
}

// fillTOAST gives the unchanged TOAST values of the new tuple (not sent) the value of
// the old tuple where it has the column: under REPLICA IDENTITY FULL, or for a key
// column of a 'K' tuple. It returns the names of the columns that stay unavailable.
func (a *Assembler) fillTOAST(c *rowChange) (unavailable []string) {
	for i, v := range a.newVals {
		if v.start != spanAbsent {
			continue
		}
		if c.oldKind != 0 && a.oldVals[i].start != spanAbsent && (c.oldKind == 'O' || slices.Contains(c.rel.identIdx, i)) {
			a.newVals[i] = a.oldVals[i]
			continue
		}
		unavailable = append(unavailable, c.rel.Names[i])
	}
	return unavailable
}

// keyValues returns the spans the key is read from: the new tuple for INSERT, UPDATE
// and READ, the old one for DELETE. When a key column's value was not sent it returns
// that column's name instead: the decoder never guesses a key.
func (a *Assembler) keyValues(c *rowChange) (vals []span, missing string) {
	rel := c.rel
	vals = a.newVals
	if c.op == OpDelete {
		vals = a.oldVals
	}
	for _, i := range rel.keyIdx {
		if vals[i].start == spanAbsent {
			return nil, rel.Names[i]
		}
	}
	if c.op == OpDelete && c.oldKind == 'K' {
		// A key the table does not flag cannot be read from a 'K' tuple.
		for _, i := range rel.keyIdx {
			if !slices.Contains(rel.identIdx, i) {
				return nil, rel.Names[i]
			}
		}
	}
	return vals, ""
}

// assemble builds the event's images from the decoded values: one allocation for the
// event and its rows, one for every value slice, one for the value bytes.
func (a *Assembler) assemble(c *rowChange, unavailable []string, keyVals []span) *Event {
	rel := c.rel
	nOld := 0
	switch c.oldKind {
	case 'O':
		nOld = countPresent(a.oldVals, nil)
	case 'K':
		nOld = countPresent(a.oldVals, rel.identIdx)
	}
	nNew := 0
	if c.op != OpDelete {
		nNew = len(rel.Columns) - len(unavailable)
	}
	im := images{vals: make([]json.RawMessage, nOld+nNew+len(rel.keyIdx)), buf: a.takeScratch()}

	b := &changeBlock{}
	ev := &b.ev
	if c.op != OpDelete {
		ev.New = im.newRow(&b.rows[1], rel, a.newVals, nNew)
	}
	if c.oldKind != 0 {
		ev.OldKind = OldFull
		if c.oldKind == 'K' {
			ev.OldKind = OldKey
		}
		ev.Old = im.oldRow(&b.rows[2], rel, c.oldKind, a.oldVals, nOld)
	}
	if len(rel.keyIdx) > 0 {
		ev.Key = im.keyRow(&b.rows[0], rel, keyVals)
	}
	if c.op == OpUpdate && c.oldKind == 'O' {
		ev.Changed = changedColumns(rel.Names, a.oldVals, a.newVals, im.buf)
	}
	return ev
}

// takeScratch returns the decoded value bytes for an event to own: a copy, or the
// scratch buffer itself when it is large (the Assembler then starts a new one).
func (a *Assembler) takeScratch() []byte {
	n := len(a.scratch)
	switch {
	case n >= bigScratch:
		buf := a.scratch[:n:n]
		a.scratch = nil
		return buf
	case n > 0:
		buf := make([]byte, n)
		copy(buf, a.scratch)
		return buf
	}
	return nil
}

// images hands out the memory of one event's rows: the value bytes, and room for the
// values of every row, cut from one slice.
type images struct {
	buf  []byte            // the decoded value bytes
	vals []json.RawMessage // room for the values of the rows not yet built
}

// take returns an empty slice with room for n values.
func (im *images) take(n int) []json.RawMessage {
	v := im.vals[:0:n]
	im.vals = im.vals[n:]
	return v
}

// value returns the JSON value v locates in the value bytes.
func (im *images) value(v span) json.RawMessage { return valueAt(im.buf, v) }

// valueAt returns the JSON value of v in buf.
func valueAt(buf []byte, v span) json.RawMessage {
	if v.start == spanNull {
		return nullJSON
	}
	return buf[v.start:v.end:v.end]
}

// newRow fills row with the n sent values of the new tuple. Its names are the
// relation's own unless some values are missing.
func (im *images) newRow(row *Row, rel *Relation, spans []span, n int) *Row {
	complete := n == len(rel.Names)
	row.Values = im.take(n)
	if complete {
		row.Names = rel.Names
	} else {
		row.Names = make([]string, 0, n)
	}
	for i, v := range spans {
		if v.start == spanAbsent {
			continue
		}
		if !complete {
			row.Names = append(row.Names, rel.Names[i])
		}
		row.Values = append(row.Values, im.value(v))
	}
	return row
}

// oldRow fills row with the n sent values of the old tuple: every column of a whole
// row ('O'), the key columns of a 'K' tuple (the others are sent as nulls and
// dropped). The row shares the relation's names when every value was sent.
func (im *images) oldRow(row *Row, rel *Relation, kind byte, spans []span, n int) *Row {
	names, idx := rel.Names, []int(nil)
	if kind == 'K' {
		names, idx = rel.identNames, rel.identIdx
	}
	complete := n == len(names)
	row.Values = im.take(n)
	if complete {
		row.Names = names
	} else {
		row.Names = make([]string, 0, n)
	}
	each(len(spans), idx, func(i int) {
		if v := spans[i]; v.start != spanAbsent {
			if !complete {
				row.Names = append(row.Names, rel.Names[i])
			}
			row.Values = append(row.Values, im.value(v))
		}
	})
	return row
}

// keyRow fills row with the values of the key columns, taken from spans.
func (im *images) keyRow(row *Row, rel *Relation, spans []span) *Row {
	row.Names = rel.keyNames
	row.Values = im.take(len(rel.keyIdx))[:len(rel.keyIdx)]
	for j, i := range rel.keyIdx {
		row.Values[j] = im.value(spans[i])
	}
	return row
}

// changedColumns lists the columns whose value differs between the old and new tuples,
// among those both sent.
func changedColumns(names []string, old, new []span, buf []byte) []string {
	changed := []string{}
	for i, nv := range new {
		ov := old[i]
		if nv.start == spanAbsent || ov.start == spanAbsent {
			continue
		}
		if string(valueAt(buf, nv)) != string(valueAt(buf, ov)) {
			changed = append(changed, names[i])
		}
	}
	return changed
}

// countPresent counts the sent values among vals (or among vals[idx] when idx is set).
func countPresent(vals []span, idx []int) int {
	n := 0
	each(len(vals), idx, func(i int) {
		if vals[i].start != spanAbsent {
			n++
		}
	})
	return n
}

// each calls f for every index in idx, or for 0..n-1 when idx is nil.
func each(n int, idx []int, f func(int)) {
	if idx == nil {
		for i := range n {
			f(i)
		}
		return
	}
	for _, i := range idx {
		f(i)
	}
}
