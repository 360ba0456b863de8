package eval

import (
	"encoding/json"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Hand-built events of public.orders (replica identity key: id), as the decoder
// would produce them: row values are JSON, jsonb values embedded objects.

// row builds a row image from name, JSON pairs.
func row(kv ...string) *decoder.Row {
	r := &decoder.Row{}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Names = append(r.Names, kv[i])
		r.Values = append(r.Values, json.RawMessage(kv[i+1]))
	}
	return r
}

var commitTime = time.Date(2026, 3, 1, 12, 30, 45, 123456000, time.UTC)

var ordersRelation = &decoder.Relation{
	ID: 16384, Namespace: "public", Name: "orders", ReplicaIdentity: 'd',
	Columns: []decoder.Column{{Name: "id", Key: true}, {Name: "status"}, {Name: "total"}, {Name: "amount"}},
}

// event builds an event of public.orders; Key is taken from the image that carries it.
func event(op decoder.Op, newRow, oldRow *decoder.Row, kind decoder.OldKind) *decoder.Event {
	ev := &decoder.Event{
		ID:         lsn.Position{Commit: 0x16B3748, Ord: 3},
		LSN:        0x16B3700,
		Xid:        771,
		CommitTime: commitTime,
		Schema:     "public",
		Table:      "orders",
		RelationID: 16384,
		Relation:   ordersRelation,
		Op:         op,
		New:        newRow,
		Old:        oldRow,
		OldKind:    kind,
	}
	src := newRow
	if op == decoder.OpDelete {
		src = oldRow
	}
	if v, ok := src.Get("id"); ok {
		ev.Key = row("id", string(v))
	}
	return ev
}

// orderRow is a full row of the fixture table; extra pairs override or add columns.
func orderRow(extra ...string) *decoder.Row {
	base := []string{
		"id", "7",
		"status", `"pending"`,
		"total", "150",
		"amount", "500.00",
		"state", `"paid"`,
		"email", `"ann@example.com"`,
		"name", `"Ann"`,
		"customer", `{"email": "ann@example.com", "address": {"city": "Oslo", "zip": null}, "tags": ["vip", 3]}`,
		"items", `[{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}]`,
		"big", "123456789012345678901234567890",
		"bigfrac", "12345678901234567890.123",
		"price", "19.99",
		"ratio", "0.1",
		"code", `"100"`,
		"codenum", "100",
		"note", "null",
		"flag", "true",
		"entity", `"column named entity"`,
	}
	r := row(base...)
	for i := 0; i+1 < len(extra); i += 2 {
		if j := indexOf(r.Names, extra[i]); j >= 0 {
			r.Values[j] = json.RawMessage(extra[i+1])
		} else {
			r.Names = append(r.Names, extra[i])
			r.Values = append(r.Values, json.RawMessage(extra[i+1]))
		}
	}
	return r
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}

func insertEvent() *decoder.Event { return event(decoder.OpInsert, orderRow(), nil, decoder.OldNone) }

// readEvent is a snapshot row (op READ) of the same order.
func readEvent() *decoder.Event { return event(decoder.OpRead, orderRow(), nil, decoder.OldNone) }

// updateFull: REPLICA IDENTITY FULL; status pending → shipped, state new → paid,
// total 100 → 120, amount 500.00 → 500.0 (the same number).
func updateFull() *decoder.Event {
	ev := event(decoder.OpUpdate,
		orderRow("status", `"shipped"`, "total", "120", "amount", "500.0"),
		orderRow("state", `"new"`, "total", "100"),
		decoder.OldFull)
	ev.Changed = []string{"status", "state", "total"}
	return ev
}

func updateCached() *decoder.Event {
	ev := updateFull()
	ev.OldKind = decoder.OldCached
	return ev
}

// updateNone: REPLICA IDENTITY DEFAULT, key unchanged: no old image at all.
func updateNone() *decoder.Event {
	return event(decoder.OpUpdate, orderRow("status", `"shipped"`), nil, decoder.OldNone)
}

// updateKey: REPLICA IDENTITY DEFAULT, the key changed 6 → 7: the old key is sent.
func updateKey() *decoder.Event {
	return event(decoder.OpUpdate, orderRow(), row("id", "6"), decoder.OldKey)
}

// updateToast: doc is an unchanged TOAST value that was not sent and not filled.
func updateToast() *decoder.Event {
	ev := event(decoder.OpUpdate,
		orderRow("status", `"shipped"`),
		orderRow("doc", `{"title": "T"}`),
		decoder.OldFull)
	ev.Unavailable = []string{"doc"}
	ev.Changed = []string{"status"}
	return ev
}

func deleteKey() *decoder.Event {
	return event(decoder.OpDelete, nil, row("id", "7"), decoder.OldKey)
}

func deleteFull() *decoder.Event {
	return event(decoder.OpDelete, nil, orderRow("status", `"cancelled"`), decoder.OldFull)
}

func truncateEvent() *decoder.Event {
	ev := event(decoder.OpTruncate, nil, nil, decoder.OldNone)
	ev.Key = nil
	return ev
}

func messageEvent() *decoder.Event {
	return &decoder.Event{
		ID:         lsn.Position{Commit: 0x16B3748, Ord: 1},
		LSN:        0x16B3740,
		Xid:        771,
		CommitTime: commitTime,
		Op:         decoder.OpMessage,
		Message:    &decoder.Message{Prefix: "audit", Content: []byte(`{"a": 1}`), Transactional: true},
	}
}
