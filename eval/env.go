package eval

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// Meta is what the observer adds to an event's environment.
type Meta struct {
	// Entity is the observer's entity name, seen as `entity`. Empty means the
	// event's "schema.table".
	Entity string
	// RowCache says that the service's row cache is on: an error about a missing
	// old value then explains that the cache had no image of the row, rather than
	// suggesting to enable it.
	RowCache bool
}

// Env is the environment conditions and templates see for one event (the names are
// listed in the package documentation). Building one is cheap: row values are decoded
// lazily, each at most once per Env, so a condition and several templates run for the
// same event share the work.
//
// An Env caches as it is read: it must be used by one goroutine at a time. Give each
// goroutine its own Env for the same event when several render concurrently. The
// event must not change while an Env built from it is in use.
type Env struct {
	ev   *decoder.Event
	meta Meta
	rows [3]rowCache // new, old, key

	id, lsn, commitLSN, entity string
	event, changes, message    map[string]any
	built                      uint8 // lazily built fields, bits below

	m meter // the running evaluation's account against its Budget
}

const (
	builtID = 1 << iota
	builtLSN
	builtCommitLSN
	builtEntity
	builtEvent
	builtChanges
	builtMessage
)

type rowCache struct {
	vals  []cell
	whole map[string]any
	done  bool // whole is built
}

type cell struct {
	v    any
	done bool
}

// NewEnv returns the environment of ev for an observer described by meta. ev must not
// be nil. It allocates one small object; nothing is decoded until an expression reads
// it.
func NewEnv(ev *decoder.Event, meta Meta) *Env {
	return &Env{ev: ev, meta: meta}
}

// Event returns the event the Env was built from.
func (e *Env) Event() *decoder.Event { return e.ev }

// rootID names the top-level names of the environment.
type rootID uint8

const (
	rootData rootID = iota
	rootNew
	rootOld
	rootKey
	rootEvent
	rootChanges
	rootMessage
	rootEventType
	rootEntity
	numRoots
)

var rootNames = [numRoots]string{"data", "new", "old", "key", "event", "changes", "message", "event_type", "entity"}

func lookupRoot(name string) (rootID, bool) {
	for i, n := range rootNames {
		if n == name {
			return rootID(i), true
		}
	}
	return 0, false
}

func (r rootID) String() string { return rootNames[r] }

func (r rootID) isRow() bool { return r <= rootKey }

// row returns the image a row root stands for, and its cache.
func (e *Env) row(r rootID) (*decoder.Row, *rowCache) {
	switch r {
	case rootData:
		if e.ev.Op == decoder.OpDelete {
			return e.ev.Old, &e.rows[1]
		}
		return e.ev.New, &e.rows[0]
	case rootNew:
		return e.ev.New, &e.rows[0]
	case rootOld:
		return e.ev.Old, &e.rows[1]
	}
	return e.ev.Key, &e.rows[2]
}

// index returns the position of column name in row r's image, or -1.
func (e *Env) index(r rootID, name string) (*decoder.Row, *rowCache, int) {
	row, c := e.row(r)
	if row == nil {
		return nil, c, -1
	}
	return row, c, slices.Index(row.Names, name)
}

// column returns the decoded value of column name of row root r. It returns an
// error when the image lacks the column (see missing), unless lenient is set and the
// column is merely absent (an unavailable TOAST value is always an error).
func (e *Env) column(r rootID, name string, lenient bool) (any, error) {
	row, c, i := e.index(r, name)
	if i < 0 {
		if lenient && !e.unavailable(r, name) {
			return nil, nil
		}
		return nil, e.missing(r, name)
	}
	return c.value(row, i)
}

func (c *rowCache) value(row *decoder.Row, i int) (any, error) {
	if c.vals == nil {
		c.vals = make([]cell, len(row.Names))
	}
	if !c.vals[i].done {
		v, err := decodeJSON(row.Values[i])
		if err != nil {
			return nil, fmt.Errorf("decode column %q: %w", row.Names[i], err)
		}
		c.vals[i] = cell{v: v, done: true}
	}
	return c.vals[i].v, nil
}

// rowValue returns row root r as an object (nil when the image is absent).
func (e *Env) rowValue(r rootID) (any, error) {
	row, c := e.row(r)
	if row == nil {
		return nil, nil
	}
	if !c.done {
		m := make(map[string]any, len(row.Names))
		for i, n := range row.Names {
			v, err := c.value(row, i)
			if err != nil {
				return nil, err
			}
			m[n] = v
		}
		c.whole, c.done = m, true
	}
	return c.whole, nil
}

// unavailable reports whether name is an unchanged TOAST column that row root r
// would hold but that was not sent.
func (e *Env) unavailable(r rootID, name string) bool {
	if r == rootNew || r == rootData && e.ev.Op != decoder.OpDelete {
		return slices.Contains(e.ev.Unavailable, name)
	}
	return false
}

// isKey reports whether name is a replica identity key column of the event's table.
func (e *Env) isKey(name string) bool {
	if e.ev.Key != nil && slices.Contains(e.ev.Key.Names, name) {
		return true
	}
	if rel := e.ev.Relation; rel != nil {
		for _, c := range rel.Columns {
			if c.Name == name {
				return c.Key
			}
		}
	}
	return false
}

func (e *Env) table() string {
	return e.ev.Schema + "." + e.ev.Table
}

// oldHint tells how to get the old values PostgreSQL did not send.
func (e *Env) oldHint() string {
	if e.meta.RowCache {
		return fmt.Sprintf("set REPLICA IDENTITY FULL on %s: the row cache had no image of this row (it knows rows changed since the service started, and a replay starts it empty)", e.table())
	}
	return fmt.Sprintf("set REPLICA IDENTITY FULL on %s or enable caching", e.table())
}

// missing explains why column name is not in row root r.
func (e *Env) missing(r rootID, name string) error {
	ev := e.ev
	if e.unavailable(r, name) {
		hint := "use REPLICA IDENTITY FULL or enable caching"
		if e.meta.RowCache {
			hint = e.oldHint()
		}
		return &fieldError{kind: ErrUnavailable, msg: fmt.Sprintf(
			"value of %q not available (unchanged TOAST; %s)", name, hint)}
	}
	msg := fmt.Sprintf("field %q not in %s", name, r)
	row, _ := e.row(r)
	switch {
	case row == nil && ev.Op == decoder.OpUpdate && r == rootOld:
		msg += fmt.Sprintf(" (no old image: old_kind none; %s)", e.oldHint())
	case row == nil:
		msg += fmt.Sprintf(" (%s event has no %s image)", ev.Op, r)
	case ev.OldKind == decoder.OldKey && (r == rootOld || r == rootData && ev.Op == decoder.OpDelete):
		msg += fmt.Sprintf(" (old_kind key: only the replica identity key; %s)", e.oldHint())
	}
	return &fieldError{kind: ErrMissingField, msg: msg}
}

// eventType is the original system's name of the operation.
func (e *Env) eventType() string {
	switch op := e.ev.Op; op {
	case decoder.OpInsert, decoder.OpUpdate, decoder.OpDelete, decoder.OpTruncate, decoder.OpRead:
		return op.String()
	}
	return "CUSTOM"
}

func (e *Env) entityName() string {
	if e.built&builtEntity == 0 {
		switch {
		case e.meta.Entity != "":
			e.entity = e.meta.Entity
		case e.ev.Table != "":
			e.entity = e.table()
		}
		e.built |= builtEntity
	}
	return e.entity
}

// eventNames are the fields of `event`.
var eventNames = []string{"id", "lsn", "commit_lsn", "xid", "commit_time", "schema", "table", "op", "old_kind", "changed", "unavailable"}

// eventField returns field name of `event`.
func (e *Env) eventField(name string) (any, bool) {
	ev := e.ev
	switch name {
	case "id":
		if e.built&builtID == 0 {
			e.id, e.built = ev.ID.String(), e.built|builtID
		}
		return e.id, true
	case "lsn":
		if e.built&builtLSN == 0 {
			e.lsn, e.built = ev.LSN.String(), e.built|builtLSN
		}
		return e.lsn, true
	case "commit_lsn":
		if e.built&builtCommitLSN == 0 {
			e.commitLSN, e.built = ev.ID.Commit.String(), e.built|builtCommitLSN
		}
		return e.commitLSN, true
	case "xid":
		return int64(ev.Xid), true
	case "commit_time":
		return ev.CommitTime, true
	case "schema":
		return ev.Schema, true
	case "table":
		return ev.Table, true
	case "op":
		return ev.Op.String(), true
	case "old_kind":
		return ev.OldKind.String(), true
	case "changed":
		return stringList(ev.Changed), true
	case "unavailable":
		return stringList(ev.Unavailable), true
	}
	return nil, false
}

func stringList(ss []string) any {
	if ss == nil {
		return nil
	}
	l := make([]any, len(ss))
	for i, s := range ss {
		l[i] = s
	}
	return l
}

// rootValue returns a root that is not a row, as a value.
func (e *Env) rootValue(r rootID) (any, error) {
	switch r {
	case rootEvent:
		if e.built&builtEvent == 0 {
			m := make(map[string]any, len(eventNames))
			for _, n := range eventNames {
				m[n], _ = e.eventField(n)
			}
			e.event, e.built = m, e.built|builtEvent
		}
		return e.event, nil
	case rootChanges:
		return e.changesValue()
	case rootMessage:
		return e.messageValue(), nil
	case rootEventType:
		return e.eventType(), nil
	case rootEntity:
		return e.entityName(), nil
	}
	return e.rowValue(r)
}

// changesValue returns {col: {old, new}} for the columns in Changed, or nil when
// the event does not say which columns changed.
func (e *Env) changesValue() (any, error) {
	if e.ev.Changed == nil {
		return nil, nil
	}
	if e.built&builtChanges == 0 {
		m := make(map[string]any, len(e.ev.Changed))
		for _, name := range e.ev.Changed {
			o, err := e.column(rootOld, name, true)
			if err != nil {
				return nil, err
			}
			n, err := e.column(rootNew, name, true)
			if err != nil {
				return nil, err
			}
			m[name] = map[string]any{"old": o, "new": n}
		}
		e.changes, e.built = m, e.built|builtChanges
	}
	return e.changes, nil
}

// messageValue returns {prefix, content, transactional} for a message event.
func (e *Env) messageValue() any {
	m := e.ev.Message
	if m == nil || e.ev.Op != decoder.OpMessage {
		return nil
	}
	if e.built&builtMessage == 0 {
		content := strings.ToValidUTF8(string(m.Content), "\uFFFD")
		e.message = map[string]any{"prefix": m.Prefix, "content": content, "transactional": m.Transactional}
		e.built |= builtMessage
	}
	return e.message
}
