package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Cache actions.
const (
	ActionInvalidate = "invalidate"
)

// ScanCount is the COUNT hint of each SCAN of a pattern invalidation: about how many
// keys of the keyspace one SCAN call visits, and so the most keys one UNLINK removes.
const ScanCount = 1000

// DefaultScanTimeout bounds one pattern invalidation (all its SCAN and UNLINK calls).
const DefaultScanTimeout = 30 * time.Second

// CacheConfig is the configuration of a `type: cache` action.
type CacheConfig struct {
	ConnConfig
	// KeyPattern is a template rendering the key to invalidate, such as
	// "order:{{ new.id }}" (one key) or "orders:{{ new.customer_id }}:*" (a pattern).
	// Values from the event are glob-escaped before they are substituted, so an
	// event value cannot widen a pattern; the template's own *, ? and [ make it a
	// pattern. Required.
	KeyPattern string `yaml:"key_pattern"`
	// Action is what to do with the keys: invalidate (the default and the only one).
	Action string `yaml:"action"`
	// ScanTimeout bounds one pattern invalidation, all its round trips together
	// (30s). A SCAN pass that does not finish in time is a transient failure; the
	// retry starts a new pass (UNLINK is idempotent).
	ScanTimeout time.Duration `yaml:"scan_timeout"`

	tmpl *eval.Template
}

// Validate checks the configuration, compiles the key pattern and fills defaults.
func (c *CacheConfig) Validate() error {
	switch c.Action {
	case "":
		c.Action = ActionInvalidate
	case ActionInvalidate:
	case "refresh":
		return keyErr("action", errors.New(`refresh is not supported (a refresh would need the loader of the cached value); use invalidate`))
	default:
		return keyErr("action", fmt.Errorf("must be invalidate, not %q", c.Action))
	}
	if c.KeyPattern == "" {
		return keyErr("key_pattern", errors.New("is required"))
	}
	t, err := eval.CompileTemplate(c.KeyPattern, eval.EscapeGlob, eval.Options{})
	if err != nil {
		return keyErr("key_pattern", err)
	}
	c.tmpl = t
	if c.ScanTimeout < 0 {
		return keyErr("scan_timeout", errors.New("must not be negative"))
	}
	if c.ScanTimeout == 0 {
		c.ScanTimeout = DefaultScanTimeout
	}
	return c.ConnConfig.Validate()
}

// Options are what a Redis sink gets from the wiring besides its configuration.
type Options struct {
	// Logger receives debug lines per delivery (event id and counts, never keys or
	// row values). The zero Logger discards.
	Logger zerolog.Logger
	// ActionID names the action in log lines.
	ActionID string
}

// Cache is the cache-invalidation sink. It is safe for concurrent use.
type Cache struct {
	cfg    CacheConfig
	client *goredis.Client
	log    zerolog.Logger
}

// NewCache validates cfg and builds the sink. It does no I/O and starts no goroutine:
// the first delivery connects. Close releases the connections.
func NewCache(cfg CacheConfig, o Options) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := cfg.newClient()
	if err != nil {
		return nil, err
	}
	return &Cache{cfg: cfg, client: client, log: o.Logger.With().Str("action", o.ActionID).Logger()}, nil
}

// Deliver invalidates the event's key or keys. A key pattern without glob characters
// of its own names one key, removed with UNLINK; otherwise SCAN MATCH visits the whole
// keyspace, ScanCount keys per call, and each call's matches are removed with one
// UNLINK. A missing key is no error: the invalidation has nothing to do.
func (c *Cache) Deliver(ctx context.Context, ev *decoder.Event) error {
	key, err := c.cfg.tmpl.Render(eval.NewEnv(ev, eval.Meta{}))
	if err != nil {
		return sinks.Permanent("template", fmt.Errorf("render key_pattern: %w", err))
	}
	if key == "" {
		return sinks.Permanent("empty_key", errors.New("key_pattern rendered an empty key"))
	}
	var n int64
	pattern := c.cfg.tmpl.HasGlob()
	if pattern {
		n, err = c.scanUnlink(ctx, key)
	} else {
		n, err = c.unlink(ctx, globUnescape(key))
	}
	if err != nil {
		return err
	}
	c.log.Debug().Str("event_id", ev.ID.String()).Bool("pattern", pattern).Int64("keys", n).Msg("cache invalidated")
	return nil
}

func (c *Cache) unlink(ctx context.Context, keys ...string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	n, err := c.client.Unlink(ctx, keys...).Result()
	if err != nil {
		return 0, Classify(fmt.Errorf("unlink: %w", err))
	}
	return n, nil
}

// scanUnlink removes every key matching pattern and returns how many it removed.
// The work of one call grows with the size of the keyspace (SCAN visits it all), in
// round trips of at most ScanCount keys, each bounded by the command timeout and all
// together by ScanTimeout. Keys created while the pass runs may be missed, as SCAN
// documents; keys present for the whole pass are not.
func (c *Cache) scanUnlink(ctx context.Context, pattern string) (int64, error) {
	pass, cancel := context.WithTimeout(ctx, c.cfg.ScanTimeout)
	defer cancel()
	var cursor uint64
	var total int64
	for {
		cctx, ccancel := context.WithTimeout(pass, c.cfg.Timeout)
		keys, next, err := c.client.Scan(cctx, cursor, pattern, ScanCount).Result()
		ccancel()
		if err != nil {
			if ctx.Err() == nil && pass.Err() != nil {
				return total, sinks.Transient("scan_timeout", fmt.Errorf("scan did not finish within %v", c.cfg.ScanTimeout), 0)
			}
			return total, Classify(fmt.Errorf("scan: %w", err))
		}
		if len(keys) > 0 {
			n, err := c.unlink(pass, keys...)
			total += n
			if err != nil {
				return total, err
			}
		}
		if next == 0 {
			return total, nil
		}
		cursor = next
	}
}

// Close closes the connections.
func (c *Cache) Close() error { return c.client.Close() }

// globUnescape turns a glob-escaped single key back into the key: a backslash makes
// the next byte literal, as in Redis's own matching.
func globUnescape(s string) string {
	i := 0
	for i < len(s) && s[i] != '\\' {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b = append(b, s[i])
	}
	return string(b)
}
