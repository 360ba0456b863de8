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

// CacheConfig is the configuration of a `type: cache` action. Zero values mean
// the documented defaults, which Defaults fills.
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
}

// Defaults fills the keys left out: action invalidate, scan_timeout 30s, and the
// connection's.
func (c *CacheConfig) Defaults() {
	if c.Action == "" {
		c.Action = ActionInvalidate
	}
	if c.ScanTimeout == 0 {
		c.ScanTimeout = DefaultScanTimeout
	}
	c.ConnConfig.Defaults()
}

// Templates implements sinks.Templater: key_pattern.
func (c *CacheConfig) Templates() []sinks.TemplateSource {
	return sinks.SetTemplates(sinks.TemplateSource{Key: "key_pattern", Src: c.KeyPattern})
}

// Validate checks the configuration, compiling the key pattern; it changes
// nothing, and zero values pass as their defaults.
func (c *CacheConfig) Validate() error {
	switch c.Action {
	case "", ActionInvalidate:
	case "refresh":
		return keyErr("action", errors.New(`refresh is not supported (a refresh would need the loader of the cached value); use invalidate`))
	default:
		return keyErr("action", fmt.Errorf("must be invalidate, not %q", c.Action))
	}
	if c.KeyPattern == "" {
		return keyErr("key_pattern", errors.New("is required"))
	}
	if _, err := eval.CompileTemplate(c.KeyPattern, eval.EscapeGlob, eval.Options{}); err != nil {
		return keyErr("key_pattern", err)
	}
	if c.ScanTimeout < 0 {
		return keyErr("scan_timeout", errors.New("must not be negative"))
	}
	return c.ConnConfig.Validate()
}

// Cache is the cache-invalidation sink. It is safe for concurrent use.
type Cache struct {
	cfg    CacheConfig
	tmpl   *eval.Template
	meta   eval.Meta
	client *goredis.Client
	log    zerolog.Logger
}

// NewCache fills cfg's defaults, validates it and builds the sink. It does no I/O
// and starts no goroutine: the first delivery connects. Close releases the
// connections. deps.Logger receives debug lines per delivery (event id and
// counts, never keys or row values).
func NewCache(_ context.Context, cfg CacheConfig, deps sinks.Deps) (*Cache, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t, err := deps.Templates.Compile(cfg.KeyPattern, eval.EscapeGlob)
	if err != nil {
		return nil, keyErr("key_pattern", err)
	}
	client, err := cfg.newClient(deps.Logger)
	if err != nil {
		return nil, err
	}
	return &Cache{cfg: cfg, tmpl: t, meta: deps.Templates.Meta, client: client, log: deps.Logger}, nil
}

// Deliver invalidates the event's key or keys. A key pattern without glob characters
// of its own names one key, removed with UNLINK; otherwise SCAN MATCH visits the whole
// keyspace, ScanCount keys per call, and each call's matches are removed with one
// UNLINK. A missing key is no error: the invalidation has nothing to do.
func (c *Cache) Deliver(ctx context.Context, ev *decoder.Event) error {
	key, err := c.tmpl.Render(eval.NewEnv(ev, c.meta))
	if err != nil {
		return sinks.Permanent("template", fmt.Errorf("render key_pattern: %w", err))
	}
	if key == "" {
		return sinks.Permanent("empty_key", errors.New("key_pattern rendered an empty key"))
	}
	var n int64
	pattern := c.tmpl.HasGlob()
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
