package main

import (
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks/redis"
)

func init() { actionBuilders["redis_stream"] = buildRedisStream }

// buildRedisStream builds a `type: redis_stream` action (docs/actions/redis_stream.md).
func buildRedisStream(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var raw struct {
		redis.StreamConfig
		redisURLEnv
	}
	if err := a.Decode(&raw); err != nil {
		return nil, err
	}
	cfg := raw.StreamConfig
	if err := oneOf(a, "url", &cfg.URL, raw.URLEnv, true); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, sinkConfigError(a, err)
	}
	if b.validateOnly {
		return nil, nil
	}
	redisClientLogger(b.log)
	return redis.NewStream(cfg, redis.Options{Logger: b.log, ActionID: a.ID})
}
