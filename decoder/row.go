package decoder

import (
	"encoding/json"
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

// change builds the event of an Insert, Update or Delete whose tuples were parsed by r.
func (d *Decoder) change(r *reader, walStart lsn.LSN, op Op, relID uint32, oldKind byte, oldCols, newCols []TupleColumn, dst []*Event) ([]*Event, error) {
	if r.err != nil {
		return dst, nil
	}
	rel := d.relations[relID]
	switch {
	case !d.inTx:
		r.protocol("change outside a transaction")
	case rel == nil:
		r.protocol(fmt.Sprintf("change of relation %d before its Relation message", relID))
	case oldKind != 0 && len(oldCols) != len(rel.Columns):
		r.protocol(fmt.Sprintf("old tuple has %d columns, relation %d has %d", len(oldCols), relID, len(rel.Columns)))
	case op != OpDelete && len(newCols) != len(rel.Columns):
		r.protocol(fmt.Sprintf("new tuple has %d columns, relation %d has %d", len(newCols), relID, len(rel.Columns)))
	}
	if r.err != nil {
		return dst, nil
	}
	d.ord++
	id := lsn.Position{Commit: d.begin.FinalLSN, Ord: d.ord}
	valueErr := func(col string, err error) error {
		return &ValueError{ID: id, LSN: walStart, Schema: rel.Namespace, Table: rel.Name, Column: col, Err: err}
	}
	if rel.hasBadName {
		return dst, valueErr(rel.badName, ErrInvalidUTF8)
	}
	if !utf8.ValidString(d.origin) {
		return dst, valueErr("", fmt.Errorf("origin name: %w", ErrInvalidUTF8))
	}

	// Decode every sent value of both tuples into the scratch buffer.
	need := 0
	for _, c := range oldCols {
		need += len(c.Data) + 8
	}
	for _, c := range newCols {
		need += len(c.Data) + 8
	}
	if limit := d.opts.MaxEventBytes; limit > 0 && need > 4*limit+1024 {
		need = 4*limit + 1024
	}
	d.scratch = slices.Grow(d.scratch[:0], need)
	var err error
	if oldKind != 0 {
		d.oldVals, err = d.decodeTuple(rel, oldCols, d.oldVals)
	}
	if err == nil && op != OpDelete {
		d.newVals, err = d.decodeTuple(rel, newCols, d.newVals)
	}
	if err != nil {
		if cap(d.scratch) > bigScratch {
			d.scratch = nil
		}
		if tl, ok := err.(*TooLargeError); ok {
			tl.ID, tl.LSN, tl.Schema, tl.Table = id, walStart, rel.Namespace, rel.Name
			return dst, tl
		}
		return dst, err.(*ValueError).fill(id, walStart, rel)
	}

	// The old image: the whole row ('O'), or the key columns of a 'K' tuple (the other
	// columns are sent as nulls and dropped).
	oldIdx := []int(nil)
	b := &changeBlock{}
	ev := &b.ev
	switch oldKind {
	case 'O':
		ev.OldKind = OldFull
	case 'K':
		ev.OldKind = OldKey
		oldIdx = rel.identIdx
	}
	// Unchanged TOAST values of the new row are unchanged: the old tuple holds them when
	// it has the column (REPLICA IDENTITY FULL, or a key column in a 'K' tuple).
	var unavailable []string
	newMissing := 0
	if op != OpDelete {
		for i, v := range d.newVals {
			if v.start != spanAbsent {
				continue
			}
			if oldKind != 0 && d.oldVals[i].start != spanAbsent && (oldKind == 'O' || slices.Contains(rel.identIdx, i)) {
				d.newVals[i] = d.oldVals[i]
				continue
			}
			newMissing++
			unavailable = append(unavailable, rel.Names[i])
		}
	}
	// The key: from the new row for INSERT and UPDATE, from the old row for DELETE.
	keyVals := d.newVals
	if op == OpDelete {
		keyVals = d.oldVals
	}
	for _, i := range rel.keyIdx {
		if keyVals[i].start == spanAbsent {
			return dst, valueErr(rel.Names[i], ErrKeyUnavailable)
		}
	}
	if op == OpDelete && oldKind == 'K' {
		// A key the table does not flag cannot be read from a 'K' tuple.
		for _, i := range rel.keyIdx {
			if !slices.Contains(rel.identIdx, i) {
				return dst, valueErr(rel.Names[i], ErrKeyUnavailable)
			}
		}
	}

	// One allocation for every value slice, one for the value bytes.
	nOld := 0
	if oldKind == 'O' {
		nOld = countPresent(d.oldVals, nil)
	} else if oldKind == 'K' {
		nOld = countPresent(d.oldVals, oldIdx)
	}
	nNew := 0
	if op != OpDelete {
		nNew = len(rel.Columns) - newMissing
	}
	vals := make([]json.RawMessage, nOld+nNew+len(rel.keyIdx))
	var buf []byte
	if len(d.scratch) >= bigScratch {
		buf, d.scratch = d.scratch[:len(d.scratch):len(d.scratch)], nil
	} else if len(d.scratch) > 0 {
		buf = make([]byte, len(d.scratch))
		copy(buf, d.scratch)
	}
	value := func(v span) json.RawMessage {
		if v.start == spanNull {
			return nullJSON
		}
		return buf[v.start:v.end:v.end]
	}

	if op != OpDelete {
		row := &b.rows[1]
		row.Values = vals[:0:nNew]
		if newMissing == 0 {
			row.Names = rel.Names
		} else {
			row.Names = make([]string, 0, nNew)
		}
		for i, v := range d.newVals {
			if v.start == spanAbsent {
				continue
			}
			if newMissing != 0 {
				row.Names = append(row.Names, rel.Names[i])
			}
			row.Values = append(row.Values, value(v))
		}
		ev.New = row
		vals = vals[nNew:]
	}
	if oldKind != 0 {
		row := &b.rows[2]
		row.Values = vals[:0:nOld]
		names := rel.Names
		if oldKind == 'K' {
			names = rel.identNames
		}
		complete := nOld == len(names)
		if complete {
			row.Names = names
		} else {
			row.Names = make([]string, 0, nOld)
		}
		each(len(d.oldVals), oldIdx, func(i int) {
			if v := d.oldVals[i]; v.start != spanAbsent {
				if !complete {
					row.Names = append(row.Names, rel.Names[i])
				}
				row.Values = append(row.Values, value(v))
			}
		})
		ev.Old = row
		vals = vals[nOld:]
	}
	if len(rel.keyIdx) > 0 {
		row := &b.rows[0]
		row.Names = rel.keyNames
		row.Values = vals[:len(rel.keyIdx):len(rel.keyIdx)]
		for j, i := range rel.keyIdx {
			row.Values[j] = value(keyVals[i])
		}
		ev.Key = row
	}
	if op == OpUpdate && oldKind == 'O' {
		ev.Changed = []string{}
		for i, nv := range d.newVals {
			ov := d.oldVals[i]
			if nv.start == spanAbsent || ov.start == spanAbsent {
				continue
			}
			if string(value(nv)) != string(value(ov)) {
				ev.Changed = append(ev.Changed, rel.Names[i])
			}
		}
	}
	ev.ID, ev.LSN, ev.Op = id, walStart, op
	ev.Xid, ev.CommitTime, ev.Origin = d.begin.Xid, d.begin.CommitTime, d.origin
	ev.Schema, ev.Table, ev.RelationID, ev.Relation = rel.Namespace, rel.Name, rel.ID, rel
	ev.Unavailable = unavailable
	return append(dst, ev), nil
}

// decodeTuple decodes the values of cols into d.scratch and returns their spans in vals
// (reused). Errors are a *TooLargeError or a *ValueError to be completed by the caller.
func (d *Decoder) decodeTuple(rel *Relation, cols []TupleColumn, vals []span) ([]span, error) {
	vals = slices.Grow(vals[:0], len(cols))[:len(cols)]
	limit := d.opts.MaxEventBytes
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
		start := len(d.scratch)
		if limit > 0 && start+minJSONSize(t.kind, len(c.Data)) > limit {
			return vals, &TooLargeError{Size: start + minJSONSize(t.kind, len(c.Data)), Limit: limit}
		}
		var err error
		d.scratch, err = d.values.appendValue(d.scratch, t, c)
		if err != nil {
			return vals, &ValueError{Column: rel.Names[i], Err: err}
		}
		if limit > 0 && len(d.scratch) > limit {
			return vals, &TooLargeError{Size: len(d.scratch), Limit: limit}
		}
		vals[i] = span{start, len(d.scratch)}
	}
	return vals, nil
}

func (e *ValueError) fill(id lsn.Position, at lsn.LSN, rel *Relation) *ValueError {
	e.ID, e.LSN, e.Schema, e.Table = id, at, rel.Namespace, rel.Name
	return e
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
