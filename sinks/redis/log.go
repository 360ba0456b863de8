package redis

import (
	"context"
	"fmt"

	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// SetClientLogger sends the Redis client library's own diagnostics (failed dials,
// discarded connections) to log at warn level instead of the standard library's
// logger on stderr. The library has one logger per process: call this once, from
// the wiring code, before the first sink is used.
func SetClientLogger(log zerolog.Logger) {
	goredis.SetLogger(clientLogger{log: log.With().Str("component", "go-redis").Logger()})
}

type clientLogger struct{ log zerolog.Logger }

// Printf logs one line of the library. Its lines name addresses and commands, never
// arguments or passwords.
func (l clientLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn().Str("detail", fmt.Sprintf(format, v...)).Msg("redis client")
}
