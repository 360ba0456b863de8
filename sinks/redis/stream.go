package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Stream entry fields. event_id and event are always written, in that order; table
// and op follow when configured.
const (
	FieldEventID = "event_id" // the stable event id, "0/16B3748:3"
	FieldEvent   = "event"    // the event JSON (docs/events.md)
	FieldTable   = "table"    // "schema.table"
	FieldOp      = "op"       // INSERT, UPDATE, DELETE, TRUNCATE, MESSAGE
)

// StreamConfig is the configuration of a `type: redis_stream` action.
type StreamConfig struct {
	ConnConfig
	// Stream is a template rendering the stream's key, such as "cdc:{{ event.table }}".
	// Values are written as they are (no escaping). Required.
	Stream string `yaml:"stream"`
	// MaxLen, when positive, trims the stream to about MaxLen entries on each XADD
	// (MAXLEN ~ N: Redis trims whole macro nodes, so the stream may hold a few more).
	MaxLen int64 `yaml:"maxlen"`
	// Fields lists the optional entry fields to add: table, op. event_id and event
	// are always written and may be listed.
	Fields []string `yaml:"fields"`

	tmpl      *eval.Template
	withTable bool
	withOp    bool
}

// Validate checks the configuration, compiles the stream template and fills defaults.
func (c *StreamConfig) Validate() error {
	if c.Stream == "" {
		return keyErr("stream", errors.New("is required"))
	}
	t, err := eval.CompileTemplate(c.Stream, eval.EscapeNone, eval.Options{})
	if err != nil {
		return keyErr("stream", err)
	}
	c.tmpl = t
	if c.MaxLen < 0 {
		return keyErr("maxlen", errors.New("must not be negative"))
	}
	seen := map[string]bool{}
	c.withTable, c.withOp = false, false
	for _, f := range c.Fields {
		if seen[f] {
			return keyErr("fields", fmt.Errorf("%q is listed twice", f))
		}
		seen[f] = true
		switch f {
		case FieldEventID, FieldEvent:
		case FieldTable:
			c.withTable = true
		case FieldOp:
			c.withOp = true
		default:
			return keyErr("fields", fmt.Errorf("unknown field %q (fields are event_id, event, table, op)", f))
		}
	}
	return c.ConnConfig.Validate()
}

// Stream is the redis_stream sink: one XADD per event with an id chosen by the server
// ("*"). Redis streams do not deduplicate, so an event delivered again after a failed
// or unanswered attempt appears twice; consumers deduplicate by the event_id field.
// It is safe for concurrent use.
type Stream struct {
	cfg    StreamConfig
	client *goredis.Client
	log    zerolog.Logger
}

// NewStream validates cfg and builds the sink. It does no I/O and starts no
// goroutine: the first delivery connects. Close releases the connections.
func NewStream(cfg StreamConfig, o Options) (*Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := cfg.newClient()
	if err != nil {
		return nil, err
	}
	return &Stream{cfg: cfg, client: client, log: o.Logger.With().Str("action", o.ActionID).Logger()}, nil
}

// args builds the XADD arguments of ev.
func (s *Stream) args(ev *decoder.Event) (*goredis.XAddArgs, error) {
	stream, err := s.cfg.tmpl.Render(eval.NewEnv(ev, eval.Meta{}))
	if err != nil {
		return nil, sinks.Permanent("template", fmt.Errorf("render stream: %w", err))
	}
	if stream == "" {
		return nil, sinks.Permanent("empty_key", errors.New("stream rendered an empty key"))
	}
	values := make([]any, 0, 8)
	values = append(values, FieldEventID, ev.ID.String(), FieldEvent, ev.JSON())
	if s.cfg.withTable {
		values = append(values, FieldTable, ev.Schema+"."+ev.Table)
	}
	if s.cfg.withOp {
		values = append(values, FieldOp, ev.Op.String())
	}
	a := &goredis.XAddArgs{Stream: stream, ID: "*", Values: values}
	if s.cfg.MaxLen > 0 {
		a.MaxLen, a.Approx = s.cfg.MaxLen, true
	}
	return a, nil
}

// Deliver appends the event to its stream and returns once Redis has answered with
// the entry's id.
func (s *Stream) Deliver(ctx context.Context, ev *decoder.Event) error {
	a, err := s.args(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.client.XAdd(ctx, a).Err(); err != nil {
		return Classify(fmt.Errorf("xadd: %w", err))
	}
	return nil
}

// DeliverBatch sends one XADD per event in one pipeline (one round trip, bounded by
// the command timeout) and sets errs[i] from the reply to evs[i]: an entry whose reply
// came back is appended even when a later reply was lost to a broken connection.
func (s *Stream) DeliverBatch(ctx context.Context, evs []*decoder.Event, errs []error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	pipe := s.client.Pipeline()
	cmds := make([]*goredis.StringCmd, len(evs))
	queued := 0
	for i, ev := range evs {
		a, err := s.args(ev)
		if err != nil {
			errs[i] = err
			continue
		}
		cmds[i] = pipe.XAdd(ctx, a)
		queued++
	}
	if queued == 0 {
		return
	}
	_, execErr := pipe.Exec(ctx) // each command carries its own result
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		err := cmd.Err()
		if err == nil && cmd.Val() == "" {
			// No entry id came back: the reply was never read.
			err = execErr
			if err == nil {
				err = errors.New("no reply")
			}
		}
		if err != nil {
			errs[i] = Classify(fmt.Errorf("xadd: %w", err))
		} else {
			errs[i] = nil
		}
	}
	s.log.Debug().Int("events", len(evs)).Int("sent", queued).Msg("stream batch appended")
}

// Close closes the connections.
func (s *Stream) Close() error { return s.client.Close() }
