package main

import (
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks/logaction"
)

func init() { actionBuilders["log"] = buildLog }

func buildLog(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var cfg logaction.Config
	if err := a.Decode(&cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, sinkConfigError(a, err)
	}
	if b.validateOnly {
		return nil, nil
	}
	log := b.log.With().Str("action", a.ID).Logger()
	if lvl := cfg.LogLevel(); lvl < b.log.GetLevel() {
		b.log.Warn().Str("action", a.ID).Str("level", cfg.Level).Str("logging_level", b.log.GetLevel().String()).
			Msg("log action level is below the logging level: its lines will not be written")
	}
	return logaction.New(cfg, logaction.Options{Logger: log, Entity: b.entity(a)})
}
