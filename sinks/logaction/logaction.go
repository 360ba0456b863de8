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

// Defaults fills the keys left out: level info, message_template "event".
func (c *Config) Defaults() {
	if c.Level == "" {
		c.Level = "info"
	}
	if c.MessageTemplate == "" {
		c.MessageTemplate = DefaultMessage
	}
}

// Templates implements sinks.Templater: message_template.
func (c *Config) Templates() []sinks.TemplateSource {
	return sinks.SetTemplates(sinks.TemplateSource{Key: "message_template", Src: c.MessageTemplate})
}

// Validate checks the configuration; it changes nothing, and zero values pass as
// their defaults. Its errors are *sinks.KeyError.
func (c *Config) Validate() error {
	if _, ok := levels[c.Level]; !ok && c.Level != "" {
		return sinks.KeyErrorf("level", fmt.Errorf("must be trace, debug, info, warn or error, not %q", c.Level))
	}
	if _, err := eval.CompileTemplate(c.MessageTemplate, eval.EscapeNone, eval.Options{}); err != nil {
		return sinks.KeyErrorf("message_template", err)
	}
	return nil
}

// LogLevel returns the configured level; call after Defaults.
func (c *Config) LogLevel() zerolog.Level { return levels[c.Level] }

// Sink writes events as log lines. It is safe for concurrent use as far as the
// logger's writer is.
type Sink struct {
	log   zerolog.Logger
	level zerolog.Level
	msg   *eval.Template
	meta  eval.Meta
}

// New fills cfg's defaults, validates it and returns a sink writing to
// deps.Logger. A level below the logger's own level writes nothing, and every
// event still counts as delivered: New warns about it once.
func New(_ context.Context, cfg Config, deps sinks.Deps) (*Sink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t, err := deps.Templates.Compile(cfg.MessageTemplate, eval.EscapeNone)
	if err != nil {
		return nil, sinks.KeyErrorf("message_template", err)
	}
	if lvl := cfg.LogLevel(); lvl < deps.Logger.GetLevel() {
		deps.Logger.Warn().Str("level", cfg.Level).Str("logging_level", deps.Logger.GetLevel().String()).
			Msg("log action level is below the logging level: its lines will not be written")
	}
	return &Sink{log: deps.Logger, level: cfg.LogLevel(), msg: t, meta: deps.Templates.Meta}, nil
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
