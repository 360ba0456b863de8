package kafka

import (
	"fmt"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Header names set on every record.
const (
	HeaderEventID = "event-id" // the stable event id, "0/16B3748:3"
	HeaderTable   = "table"    // "schema.table" ("" for a logical message)
	HeaderOp      = "op"       // INSERT, UPDATE, DELETE, TRUNCATE, MESSAGE
)

// recordOverhead is what a record adds to a batch besides its key, value and
// headers, at most (varint lengths, attributes, deltas), plus the batch header of
// a batch holding only it: franz-go refuses a record whose batch would exceed
// ProducerBatchMaxBytes.
const recordOverhead = 61 + 32

// record builds the Kafka record of ev: topic from the template, key, value and
// headers. Its errors are classified (permanent: the event cannot be produced as is).
func (s *Sink) record(ev *decoder.Event) (*kgo.Record, error) {
	topic := s.cfg.Topic
	if !s.topic.Static() {
		var err error
		if topic, err = s.topic.Render(eval.NewEnv(ev, s.meta)); err != nil {
			return nil, sinks.Permanent("template", fmt.Errorf("render topic: %w", err))
		}
		if err := checkTopic(topic); err != nil {
			return nil, sinks.Permanent("invalid_topic", fmt.Errorf("rendered topic: %w", err))
		}
	}
	r := &kgo.Record{
		Topic: topic,
		Key:   AppendKey(nil, ev),
		Value: ev.JSON(),
		Headers: []kgo.RecordHeader{
			{Key: HeaderEventID, Value: ev.ID.AppendText(nil)},
			{Key: HeaderTable, Value: tableName(ev)},
			{Key: HeaderOp, Value: []byte(ev.Op.String())},
		},
	}
	if n := recordSize(r); n > int(s.cfg.MaxMessageBytes) {
		return nil, sinks.Permanent("too_large", fmt.Errorf("record of %d bytes exceeds max_message_bytes (%d)", n, s.cfg.MaxMessageBytes))
	}
	return r, nil
}

// recordSize estimates the bytes r takes in a record batch of its own.
func recordSize(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value) + recordOverhead
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

func tableName(ev *decoder.Event) []byte {
	if ev.Table == "" {
		return nil
	}
	b := make([]byte, 0, len(ev.Schema)+1+len(ev.Table))
	b = append(b, ev.Schema...)
	b = append(b, '.')
	return append(b, ev.Table...)
}

// AppendKey appends the record key of ev to b: "schema.table:" followed by the
// row's key column values as JSON, separated by commas ("public.orders:42",
// `public.items:42,"a"`), so that every event of one row has the same key and
// therefore the same partition. A table without a key gives "schema.table:" (all
// its events in one partition); a logical message gives "message:" and its prefix.
func AppendKey(b []byte, ev *decoder.Event) []byte {
	if ev.Op == decoder.OpMessage && ev.Message != nil {
		b = append(b, "message:"...)
		return append(b, ev.Message.Prefix...)
	}
	b = append(b, ev.Schema...)
	b = append(b, '.')
	b = append(b, ev.Table...)
	b = append(b, ':')
	if ev.Key != nil {
		for i, v := range ev.Key.Values {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, v...)
		}
	}
	return b
}

// logger passes the client's warnings and errors to zerolog.
type logger struct{ l zerolog.Logger }

func (l logger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l logger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	e := l.l.Warn()
	if level == kgo.LogLevelError {
		e = l.l.Error()
	}
	for i := 0; i+1 < len(keyvals); i += 2 {
		if k, ok := keyvals[i].(string); ok {
			e = e.Interface(k, keyvals[i+1])
		}
	}
	e.Str("component", "kafka").Msg(msg)
}
