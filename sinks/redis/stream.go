package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"

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

// StreamConfig is the configuration of a `type: redis_stream` action. Zero values
// mean the documented defaults, which Defaults fills.
type StreamConfig struct {
	ConnConfig
	// Batch is batch_size: the most events one pipeline of XADDs carries (default
	// pipeline.batch_size).
	sinks.Batch `yaml:",inline"`
	// Stream is a template rendering the stream's key, such as "cdc:{{ event.table }}".
	// Values are written as they are (no escaping). Required.
	Stream string `yaml:"stream"`
	// MaxLen, when positive, trims the stream to about MaxLen entries on each XADD
	// (MAXLEN ~ N: Redis trims whole macro nodes, so the stream may hold a few more).
	MaxLen int64 `yaml:"maxlen"`
	// Fields lists the optional entry fields to add: table, op. event_id and event
	// are always written and may be listed.
	Fields []string `yaml:"fields"`
}

// Defaults fills the connection keys left out.
func (c *StreamConfig) Defaults() { c.ConnConfig.Defaults() }

// Templates implements sinks.Templater: stream.
func (c *StreamConfig) Templates() []sinks.TemplateSource {
	return sinks.SetTemplates(sinks.TemplateSource{Key: "stream", Src: c.Stream})
}

// Validate checks the configuration, compiling the stream template; it changes
// nothing, and zero values pass as their defaults.
func (c *StreamConfig) Validate() error {
	if c.Stream == "" {
		return keyErr("stream", errors.New("is required"))
	}
	if _, err := eval.CompileTemplate(c.Stream, eval.EscapeNone, eval.Options{}); err != nil {
		return keyErr("stream", err)
	}
	if c.MaxLen < 0 {
		return keyErr("maxlen", errors.New("must not be negative"))
	}
	seen := map[string]bool{}
	for _, f := range c.Fields {
		if seen[f] {
			return keyErr("fields", fmt.Errorf("%q is listed twice", f))
		}
		seen[f] = true
		switch f {
		case FieldEventID, FieldEvent, FieldTable, FieldOp:
		default:
			return keyErr("fields", fmt.Errorf("unknown field %q (fields are event_id, event, table, op)", f))
		}
	}
	if err := c.Batch.Check(); err != nil {
		return err
	}
	return c.ConnConfig.Validate()
}

// Stream is the redis_stream sink: one XADD per event with an id chosen by the server
// ("*"). Redis streams do not deduplicate, so an event delivered again after a failed
// or unanswered attempt appears twice; consumers deduplicate by the event_id field.
// It is safe for concurrent use.
type Stream struct {
	cfg       StreamConfig
	tmpl      *eval.Template
	meta      eval.Meta
	withTable bool
	withOp    bool
	client    *goredis.Client
	log       zerolog.Logger
}

// NewStream fills cfg's defaults, validates it and builds the sink. It does no I/O
// and starts no goroutine: the first delivery connects. Close releases the
// connections.
func NewStream(_ context.Context, cfg StreamConfig, deps sinks.Deps) (*Stream, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t, err := deps.Templates.Compile(cfg.Stream, eval.EscapeNone)
	if err != nil {
		return nil, keyErr("stream", err)
	}
	client, err := cfg.newClient(deps.Logger)
	if err != nil {
		return nil, err
	}
	s := &Stream{cfg: cfg, tmpl: t, meta: deps.Templates.Meta, client: client, log: deps.Logger}
	s.withTable = slices.Contains(cfg.Fields, FieldTable)
	s.withOp = slices.Contains(cfg.Fields, FieldOp)
	return s, nil
}

// args builds the XADD arguments of ev.
func (s *Stream) args(ev *decoder.Event) (*goredis.XAddArgs, error) {
	stream, err := s.tmpl.Render(eval.NewEnv(ev, s.meta))
	if err != nil {
		return nil, sinks.Permanent("template", fmt.Errorf("render stream: %w", err))
	}
	if stream == "" {
		return nil, sinks.Permanent("empty_key", errors.New("stream rendered an empty key"))
	}
	values := make([]any, 0, 8)
	values = append(values, FieldEventID, ev.ID.String(), FieldEvent, ev.JSON())
	if s.withTable {
		values = append(values, FieldTable, ev.Schema+"."+ev.Table)
	}
	if s.withOp {
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
