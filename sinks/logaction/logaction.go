// Package logaction is the log action: each event writes one structured log line
// with its id, table and operation and a message rendered from a template. Row
// values appear only when the operator's template puts them there. See
// docs/actions/log.md.
package logaction

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// DefaultMessage is the message when message_template is not set.
const DefaultMessage = "event"

// Config is the action configuration (YAML keys of a `type: log` action).
type Config struct {
	// Level is trace, debug, info (default), warn or error.
	Level string `yaml:"level"`
	// MessageTemplate renders the line's message (plain substitution); default "event".
	MessageTemplate string `yaml:"message_template"`
}

var levels = map[string]zerolog.Level{
	"trace": zerolog.TraceLevel, "debug": zerolog.DebugLevel, "info": zerolog.InfoLevel,
	"warn": zerolog.WarnLevel, "error": zerolog.ErrorLevel,
}

// Validate checks the configuration and fills defaults; errors are *sinks.KeyError.
func (c *Config) Validate() error {
	if c.Level == "" {
		c.Level = "info"
	}
	if _, ok := levels[c.Level]; !ok {
		return sinks.KeyErrorf("level", fmt.Errorf("must be trace, debug, info, warn or error, not %q", c.Level))
	}
	if c.MessageTemplate == "" {
		c.MessageTemplate = DefaultMessage
	}
	if _, err := eval.CompileTemplate(c.MessageTemplate, eval.EscapeNone, eval.Options{}); err != nil {
		return sinks.KeyErrorf("message_template", err)
	}
	return nil
}

// LogLevel returns the configured level; call after Validate.
func (c *Config) LogLevel() zerolog.Level { return levels[c.Level] }

// Options are the sink's dependencies.
type Options struct {
	// Logger receives the lines; the builder adds the action id to it.
	Logger zerolog.Logger
	// Entity is the observer's entity name, seen by message_template as `entity`.
	Entity string
}

// Sink writes events as log lines. It is safe for concurrent use as far as the
// logger's writer is.
type Sink struct {
	log   zerolog.Logger
	level zerolog.Level
	msg   *eval.Template
	meta  eval.Meta
}

// New validates cfg and returns a sink. A level below the logger's own level
// writes nothing, and every event still counts as delivered.
func New(cfg Config, opts Options) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t, err := eval.CompileTemplate(cfg.MessageTemplate, eval.EscapeNone, eval.Options{})
	if err != nil {
		return nil, sinks.KeyErrorf("message_template", err)
	}
	return &Sink{log: opts.Logger, level: cfg.LogLevel(), msg: t, meta: eval.Meta{Entity: opts.Entity}}, nil
}

// Deliver writes one line: level, event_id, table ("schema.table"), op and the
// rendered message. A template that fails for the event is a permanent error.
func (s *Sink) Deliver(ctx context.Context, ev *decoder.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	msg := s.msg.String()
	if !s.msg.Static() {
		var err error
		if msg, err = s.msg.Render(eval.NewEnv(ev, s.meta)); err != nil {
			return sinks.Permanent("template", fmt.Errorf("render message_template: %w", err))
		}
	}
	e := s.log.WithLevel(s.level)
	if e == nil {
		return nil // below the logger's level
	}
	e.Str("event_id", ev.ID.String()).Str("table", ev.Schema+"."+ev.Table).Str("op", ev.Op.String()).Msg(msg)
	return nil
}
