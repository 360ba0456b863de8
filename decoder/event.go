package decoder

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Op is the kind of change an Event describes.
type Op uint8

// The operations of the event contract. READ is reserved for snapshot rows.
const (
	OpInsert Op = iota + 1
	OpUpdate
	OpDelete
	OpTruncate
	OpMessage
	OpRead
)

var opNames = [...]string{"", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "MESSAGE", "READ"}

// String returns the upper-case name used in the event JSON ("INSERT").
func (o Op) String() string {
	if int(o) < len(opNames) && o != 0 {
		return opNames[o]
	}
	return "UNKNOWN"
}

// ParseOp returns the Op named s ("INSERT"), or false.
func ParseOp(s string) (Op, bool) {
	for i := 1; i < len(opNames); i++ {
		if opNames[i] == s {
			return Op(i), true
		}
	}
	return 0, false
}

// OldKind says what the old image of an UPDATE or DELETE holds.
type OldKind uint8

// Old image kinds.
const (
	OldNone   OldKind = iota // no old image (INSERT, REPLICA IDENTITY NOTHING, or key unchanged)
	OldKey                   // only the replica identity key columns
	OldFull                  // every column (REPLICA IDENTITY FULL)
	OldCached                // every column, from the pipeline's row cache (never set by the Decoder)
)

var oldKindNames = [...]string{"none", "key", "full", "cached"}

// String returns the name used in the event JSON ("full").
func (k OldKind) String() string {
	if int(k) < len(oldKindNames) {
		return oldKindNames[k]
	}
	return "none"
}

// Row is a row image: column names and their values as JSON. A nil Row means "no
// image". Value i belongs to column Names[i]; SQL NULL is the JSON literal null. A
// column whose value was not sent (unchanged TOAST) is absent from the Row.
//
// Names may be shared with the relation cache and with other rows: never modify it.
// Values are owned by the Row and never alias the connection's read buffer.
type Row struct {
	Names  []string
	Values []json.RawMessage
}

// Len returns the number of columns in the row.
func (r *Row) Len() int {
	if r == nil {
		return 0
	}
	return len(r.Names)
}

// Get returns the JSON value of column name and whether the row has that column.
func (r *Row) Get(name string) (json.RawMessage, bool) {
	if r == nil {
		return nil, false
	}
	for i, n := range r.Names {
		if n == name {
			return r.Values[i], true
		}
	}
	return nil, false
}

// AppendJSON appends the row as a JSON object, columns in table order.
func (r *Row) AppendJSON(b []byte) []byte {
	if r == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	for i, n := range r.Names {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, n)
		b = append(b, ':')
		b = append(b, r.Values[i]...)
	}
	return append(b, '}')
}

// Event is one committed change, in the shape every sink receives. It is built by the
// Decoder (or an Assembler) and is read-only once handed on to a consumer, which may
// complete its images before any other goroutine sees it (the pipeline's row cache
// fills Old, with OldKind OldCached, and unchanged TOAST columns of New); from then on
// many goroutines may read it at once. Pass it by pointer; it must not be copied after
// first use.
type Event struct {
	// ID is the stable event id: commit LSN of the transaction and ordinal of the change
	// within it. It does not depend on filtering and is identical on every replay.
	ID lsn.Position
	// LSN is the WAL position of the change record itself.
	LSN lsn.LSN
	// Xid is the transaction id (0 for a non-transactional message).
	Xid uint32
	// CommitTime is the commit timestamp of the transaction (zero, and null in the JSON,
	// for a non-transactional message).
	CommitTime time.Time
	// Origin is the replication origin of the transaction, when one was sent.
	Origin string

	// Schema and Table name the relation as sent by pgoutput (empty for OpMessage).
	Schema string
	Table  string
	// RelationID is the table's OID; Relation is the descriptor the change was decoded
	// with (a new pointer after every Relation message, so caches can tell schema changes).
	RelationID uint32
	Relation   *Relation

	Op Op
	// Key holds the replica identity key columns of the row (from New for INSERT and
	// UPDATE, from Old for DELETE); nil when the table has no key.
	Key *Row
	// New is the row after the change (INSERT, UPDATE); nil otherwise.
	New *Row
	// Old is the row before the change, as much as PostgreSQL sent (see OldKind).
	Old     *Row
	OldKind OldKind
	// Changed lists the columns whose value differs between Old and New; it is only
	// known when both full images are present (nil otherwise).
	Changed []string
	// Unavailable lists unchanged TOAST columns of New whose value PostgreSQL did not
	// send and that could not be filled; they are absent from New, never null.
	Unavailable []string
	// Message is set for OpMessage.
	Message *Message

	jsonOnce sync.Once
	json     []byte
}

// Size returns an estimate of the memory the event holds, for byte-bounded queues.
//
// It counts what the event holds while in flight: the event and its rows, the value
// bytes, and the JSON encoding sinks produce from it (about as large again as the
// values and column names), so a byte budget built on it tracks real memory.
func (e *Event) Size() int {
	n := 512 + 2*(len(e.Schema)+len(e.Table))
	for _, r := range [...]*Row{e.New, e.Old, e.Key} {
		if r != nil {
			for i, v := range r.Values {
				n += 2*len(v) + len(r.Names[i]) + 40
			}
		}
	}
	if e.Message != nil {
		n += 2 * (len(e.Message.Prefix) + len(e.Message.Content))
	}
	return n
}

// ValueBytes returns the bytes of the event's new and old row values, as JSON: what
// source.max_event_bytes (Options.MaxEventBytes) bounds.
func (e *Event) ValueBytes() int {
	n := 0
	for _, r := range [...]*Row{e.New, e.Old} {
		if r != nil {
			for _, v := range r.Values {
				n += len(v)
			}
		}
	}
	return n
}

// JSON returns the event encoded as JSON. It is computed once and shared: callers
// must not modify the returned slice.
func (e *Event) JSON() []byte {
	e.jsonOnce.Do(func() { e.json = e.AppendJSON(make([]byte, 0, e.Size())) })
	return e.json
}

// MarshalJSON implements json.Marshaler with the documented event shape.
func (e *Event) MarshalJSON() ([]byte, error) { return e.JSON(), nil }

// AppendJSON appends the event as JSON (see docs/events.md for the shape).
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":"`...)
	b = e.ID.AppendText(b)
	b = append(b, `","lsn":"`...)
	b = e.LSN.AppendText(b)
	b = append(b, `","commit_lsn":"`...)
	b = e.ID.Commit.AppendText(b)
	b = append(b, `","xid":`...)
	b = strconv.AppendUint(b, uint64(e.Xid), 10)
	if e.CommitTime.IsZero() {
		b = append(b, `,"commit_time":null`...)
	} else {
		b = append(b, `,"commit_time":"`...)
		b = e.CommitTime.UTC().AppendFormat(b, "2006-01-02T15:04:05.999999Z07:00")
		b = append(b, '"')
	}
	b = append(b, `,"schema":`...)
	b = AppendJSONString(b, e.Schema)
	b = append(b, `,"table":`...)
	b = AppendJSONString(b, e.Table)
	b = append(b, `,"op":"`...)
	b = append(b, e.Op.String()...)
	b = append(b, `","key":`...)
	b = e.Key.AppendJSON(b)
	b = append(b, `,"new":`...)
	b = e.New.AppendJSON(b)
	b = append(b, `,"old":`...)
	b = e.Old.AppendJSON(b)
	b = append(b, `,"old_kind":"`...)
	b = append(b, e.OldKind.String()...)
	b = append(b, `","changed":`...)
	b = appendStrings(b, e.Changed)
	b = append(b, `,"unavailable":`...)
	b = appendStrings(b, e.Unavailable)
	if e.Origin != "" {
		b = append(b, `,"origin":`...)
		b = AppendJSONString(b, e.Origin)
	}
	if m := e.Message; m != nil {
		b = append(b, `,"message":{"prefix":`...)
		b = AppendJSONString(b, m.Prefix)
		if utf8.Valid(m.Content) {
			b = append(b, `,"content":`...)
			b = AppendJSONString(b, string(m.Content))
		} else {
			b = append(b, `,"content_base64":"`...)
			b = appendBase64(b, m.Content)
			b = append(b, '"')
		}
		b = append(b, `,"transactional":`...)
		b = strconv.AppendBool(b, m.Transactional)
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, s)
	}
	return append(b, ']')
}
