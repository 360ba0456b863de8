package search

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Bulk actions.
const (
	actionIndex  = "index"
	actionUpdate = "update"
	actionDelete = "delete"
)

// appendOp appends the bulk lines of ev to buf: an action line, and a source line
// for index and update. It returns the action, or a permanent error (buf
// unchanged) when ev cannot be indexed.
func (s *Sink) appendOp(buf []byte, ev *decoder.Event) ([]byte, string, error) {
	var action string
	switch ev.Op {
	case decoder.OpInsert, decoder.OpUpdate, decoder.OpRead:
		if ev.New == nil {
			return buf, "", sinks.Permanent("no_row", fmt.Errorf("%s event has no new row", ev.Op))
		}
		action = actionIndex
		if len(ev.Unavailable) > 0 {
			// Unchanged TOAST values were not sent: a full index would drop those
			// fields from the document, a partial update keeps them.
			action = actionUpdate
		}
	case decoder.OpDelete:
		action = actionDelete
	case decoder.OpTruncate:
		return buf, "", sinks.Permanent("truncate_unsupported", errors.New("truncate is not supported by the search action (delete the documents or the index yourself)"))
	default:
		return buf, "", sinks.Permanent("unsupported_op", fmt.Errorf("%s events are not supported by the search action", ev.Op))
	}
	var env *eval.Env
	newEnv := func() *eval.Env {
		if env == nil {
			env = eval.NewEnv(ev, s.meta)
		}
		return env
	}
	index := s.cfg.Index
	if !s.index.Static() {
		var err error
		if index, err = s.index.Render(newEnv()); err != nil {
			return buf, "", sinks.Permanent("template", fmt.Errorf("render index: %w", err))
		}
		if err := checkIndex(index); err != nil {
			return buf, "", sinks.Permanent("invalid_index", fmt.Errorf("rendered index: %w", err))
		}
	}
	var id string
	if s.id != nil {
		var err error
		if id, err = s.id.Render(newEnv()); err != nil {
			return buf, "", sinks.Permanent("template", fmt.Errorf("render id_template: %w", err))
		}
	} else {
		var err error
		if id, err = DocumentID(ev); err != nil {
			return buf, "", err
		}
	}
	if id == "" || len(id) > MaxIDBytes {
		return buf, "", sinks.Permanent("invalid_document_id", fmt.Errorf("document id must be 1 to %d bytes, got %d", MaxIDBytes, len(id)))
	}

	buf = append(buf, `{"`...)
	buf = append(buf, action...)
	buf = append(buf, `":{"_index":`...)
	buf = decoder.AppendJSONString(buf, index)
	buf = append(buf, `,"_id":`...)
	buf = decoder.AppendJSONString(buf, id)
	if action == actionUpdate {
		buf = append(buf, `,"retry_on_conflict":3`...)
	}
	buf = append(buf, "}}\n"...)
	switch action {
	case actionIndex:
		buf = s.appendDocument(buf, ev)
		buf = append(buf, '\n')
	case actionUpdate:
		buf = append(buf, `{"doc":`...)
		buf = s.appendDocument(buf, ev)
		buf = append(buf, `,"doc_as_upsert":true}`...)
		buf = append(buf, '\n')
	}
	return buf, action, nil
}

// appendDocument appends the new row as a JSON object, with the event id under
// EventIDField when configured (replacing a column of that name).
func (s *Sink) appendDocument(buf []byte, ev *decoder.Event) []byte {
	f := s.cfg.EventIDField
	if f == "" {
		return ev.New.AppendJSON(buf)
	}
	buf = append(buf, '{')
	n := 0
	for i, name := range ev.New.Names {
		if name == f {
			continue
		}
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = decoder.AppendJSONString(buf, name)
		buf = append(buf, ':')
		buf = append(buf, ev.New.Values[i]...)
		n++
	}
	if n > 0 {
		buf = append(buf, ',')
	}
	buf = decoder.AppendJSONString(buf, f)
	buf = append(buf, `:"`...)
	buf = ev.ID.AppendText(buf)
	return append(buf, `"}`...)
}

// DocumentID returns the default document id of ev: "<schema>.<table>:" followed by
// the key values in key column order, joined by ",". String values are written
// without quotes, with "," and "\" escaped by a backslash; other values as their
// JSON text (42, true, 12.50). An event without a key has no default id.
func DocumentID(ev *decoder.Event) (string, error) {
	if ev.Key.Len() == 0 {
		return "", sinks.Permanent("no_document_id", fmt.Errorf("%s.%s has no key columns; set id_template", ev.Schema, ev.Table))
	}
	var b strings.Builder
	b.WriteString(ev.Schema)
	b.WriteByte('.')
	b.WriteString(ev.Table)
	b.WriteByte(':')
	for i, v := range ev.Key.Values {
		if i > 0 {
			b.WriteByte(',')
		}
		if len(v) > 0 && v[0] == '"' {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return "", sinks.Permanent("no_document_id", errors.New("key value is not valid JSON"))
			}
			for _, c := range []byte(s) {
				if c == ',' || c == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(c)
			}
			continue
		}
		b.Write(v)
	}
	return b.String(), nil
}
