package decoder

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// ParseEvent parses an event in the JSON shape AppendJSON writes (docs/events.md),
// as stored in the dead-letter queue, back into an Event: ids, positions, table,
// operation, the key/new/old rows with their values as raw JSON (column order kept),
// old_kind, changed, unavailable, origin and message. Relation and RelationID are
// not part of the JSON and stay zero. The returned Event owns its memory; data may be
// reused afterwards. AppendJSON of the result reproduces data when data came from
// AppendJSON.
func ParseEvent(data []byte) (*Event, error) {
	var raw struct {
		ID          string          `json:"id"`
		LSN         string          `json:"lsn"`
		CommitLSN   string          `json:"commit_lsn"`
		Xid         uint32          `json:"xid"`
		CommitTime  *time.Time      `json:"commit_time"`
		Schema      string          `json:"schema"`
		Table       string          `json:"table"`
		Op          string          `json:"op"`
		Key         json.RawMessage `json:"key"`
		New         json.RawMessage `json:"new"`
		Old         json.RawMessage `json:"old"`
		OldKind     string          `json:"old_kind"`
		Changed     []string        `json:"changed"`
		Unavailable []string        `json:"unavailable"`
		Origin      string          `json:"origin"`
		Message     *struct {
			Prefix        string  `json:"prefix"`
			Content       *string `json:"content"`
			ContentBase64 *string `json:"content_base64"`
			Transactional bool    `json:"transactional"`
		} `json:"message"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse event: %w", err)
	}
	ev := &Event{Xid: raw.Xid, Schema: raw.Schema, Table: raw.Table, Origin: raw.Origin,
		Changed: raw.Changed, Unavailable: raw.Unavailable}
	var err error
	if ev.ID, err = lsn.ParsePosition(raw.ID); err != nil {
		return nil, fmt.Errorf("parse event: id: %w", err)
	}
	if ev.LSN, err = lsn.Parse(raw.LSN); err != nil {
		return nil, fmt.Errorf("parse event: lsn: %w", err)
	}
	if raw.CommitLSN != "" && raw.CommitLSN != ev.ID.Commit.String() {
		return nil, fmt.Errorf("parse event: commit_lsn %s does not match id %s", raw.CommitLSN, raw.ID)
	}
	if raw.CommitTime != nil {
		ev.CommitTime = *raw.CommitTime
	}
	op, ok := ParseOp(raw.Op)
	if !ok {
		return nil, fmt.Errorf("parse event: unknown op %q", raw.Op)
	}
	ev.Op = op
	kind, ok := parseOldKind(raw.OldKind)
	if !ok {
		return nil, fmt.Errorf("parse event: unknown old_kind %q", raw.OldKind)
	}
	ev.OldKind = kind
	for _, r := range []struct {
		name string
		src  json.RawMessage
		dst  **Row
	}{{"key", raw.Key, &ev.Key}, {"new", raw.New, &ev.New}, {"old", raw.Old, &ev.Old}} {
		if *r.dst, err = parseRow(r.src); err != nil {
			return nil, fmt.Errorf("parse event: %s: %w", r.name, err)
		}
	}
	if m := raw.Message; m != nil {
		msg := &Message{Prefix: m.Prefix, Transactional: m.Transactional, LSN: ev.LSN}
		switch {
		case m.Content != nil:
			msg.Content = []byte(*m.Content)
		case m.ContentBase64 != nil:
			if msg.Content, err = base64.StdEncoding.DecodeString(*m.ContentBase64); err != nil {
				return nil, fmt.Errorf("parse event: message content_base64: %w", err)
			}
		}
		ev.Message = msg
	}
	return ev, nil
}

func parseOldKind(s string) (OldKind, bool) {
	for i, n := range oldKindNames {
		if n == s {
			return OldKind(i), true
		}
	}
	return 0, s == ""
}

// parseRow parses a JSON object into a Row, keeping the column order and each value's
// bytes as written; null or an absent field is a nil Row.
func parseRow(src json.RawMessage) (*Row, error) {
	src = bytes.TrimSpace(src)
	if len(src) == 0 || string(src) == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(src))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	r := &Row{Names: []string{}, Values: []json.RawMessage{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("column %q: %w", name, err)
		}
		r.Names = append(r.Names, name)
		r.Values = append(r.Values, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return r, nil
}
