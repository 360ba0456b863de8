package main

import (
	"sync"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks/redis"
)

func init() { actionBuilders["cache"] = buildCache }

// redisURLEnv is the url_env key of the Redis actions.
type redisURLEnv struct {
	URLEnv configs.EnvRef `yaml:"url_env"`
}

var redisLoggerOnce sync.Once

// redisClientLogger routes the Redis client's own diagnostics to the root logger.
func redisClientLogger(log zerolog.Logger) {
	redisLoggerOnce.Do(func() { redis.SetClientLogger(log) })
}

// buildCache builds a `type: cache` action (docs/actions/cache.md).
func buildCache(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var raw struct {
		redis.CacheConfig
		redisURLEnv
	}
	if err := a.Decode(&raw); err != nil {
		return nil, err
	}
	cfg := raw.CacheConfig
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
	return redis.NewCache(cfg, redis.Options{Logger: b.log, ActionID: a.ID})
}
