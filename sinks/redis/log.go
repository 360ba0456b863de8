package redis

import (
	"context"
	"fmt"
	"sync"

	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// clientLoggerOnce makes the first sink built set the library's logger.
var clientLoggerOnce sync.Once

// SetClientLogger sends the Redis client library's own diagnostics (failed dials,
// discarded connections) to log at warn level instead of the standard library's
// logger on stderr. The library has one logger per process: the first Redis sink
// built sets it to its own logger (its lines carry that action's id; they name
// the address they are about).
func SetClientLogger(log zerolog.Logger) {
	goredis.SetLogger(clientLogger{log: log.With().Str("component", "go-redis").Logger()})
}

type clientLogger struct{ log zerolog.Logger }

// Printf logs one line of the library. Its lines name addresses and commands, never
// arguments or passwords.
func (l clientLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn().Str("detail", fmt.Sprintf(format, v...)).Msg("redis client")
}
