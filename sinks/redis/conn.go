// Package redis holds the Redis actions: cache (key invalidation with UNLINK, or SCAN
// MATCH + UNLINK for a pattern) and redis_stream (XADD of the event). Both share the
// connection settings of ConnConfig and the error classification of Classify. The
// client is github.com/redis/go-redis/v9 against one Redis server (no Cluster, no
// Sentinel).
package redis

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Connection defaults.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultTimeout     = 2 * time.Second
)

// ConnConfig is the connection part of a Redis action's configuration.
type ConnConfig struct {
	// URL is redis://[user:password@]host[:port][/db] or rediss://... for TLS (the
	// server certificate is verified against the system roots and the host name).
	// Query parameters are refused: timeouts and pool size are keys of their own, so
	// no URL can switch a timeout off. The URL may hold a password: it is never
	// printed, and error messages never quote it. url, or url_env naming the
	// variable that holds it.
	URL configs.Secret `yaml:"url,env"`
	// DialTimeout bounds establishing a connection, TLS handshake included (5s).
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Timeout bounds each command, or each pipeline of commands, from write to the
	// last reply (2s).
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is the most connections kept open (go-redis's default, 10 per CPU,
	// when 0).
	PoolSize int `yaml:"pool_size"`
	// CAFile is a PEM file of CA certificates to verify a rediss:// server with,
	// instead of the system roots.
	CAFile string `yaml:"ca_file"`
}

// Defaults fills the connection keys left out: dial_timeout 5s, timeout 2s.
func (c *ConnConfig) Defaults() {
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
}

// Validate checks the connection settings; it changes nothing. It reads CAFile.
// A URL whose variable was not set (configs.Options.DeferEnv) is not checked.
func (c *ConnConfig) Validate() error {
	if !c.URL.IsSet() {
		return keyErr("url", errors.New("url or url_env is required"))
	}
	if c.URL.Known() {
		o, err := c.options()
		if err != nil {
			return keyErr("url", err)
		}
		if c.CAFile != "" && o.TLSConfig == nil {
			return keyErr("ca_file", errors.New("needs a rediss:// url"))
		}
	}
	if c.CAFile != "" {
		if _, err := c.roots(); err != nil {
			return keyErr("ca_file", err)
		}
	}
	switch {
	case c.DialTimeout < 0:
		return keyErr("dial_timeout", errors.New("must not be negative"))
	case c.Timeout < 0:
		return keyErr("timeout", errors.New("must not be negative"))
	case c.PoolSize < 0:
		return keyErr("pool_size", errors.New("must not be negative"))
	}
	return nil
}

// roots reads CAFile.
func (c *ConnConfig) roots() (*x509.CertPool, error) {
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in the file")
	}
	return roots, nil
}

// options turns the URL into go-redis options. Errors never quote the URL, which may
// hold a password.
func (c *ConnConfig) options() (*goredis.Options, error) {
	u, err := url.Parse(c.URL.Value())
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("scheme must be redis or rediss, not %q", u.Scheme)
	}
	if u.RawQuery != "" {
		return nil, errors.New("query parameters are not supported; use the action's keys (dial_timeout, timeout, pool_size)")
	}
	if u.Host == "" {
		return nil, errors.New("has no host")
	}
	o, err := goredis.ParseURL(c.URL.Value())
	if err != nil {
		return nil, errors.New("not a valid Redis URL (redis[s]://[user:password@]host[:port][/db])")
	}
	return o, nil
}

// newClient builds the client; it connects lazily, at the first command. It
// routes the client library's own diagnostics to log, once per process.
func (c *ConnConfig) newClient(log zerolog.Logger) (*goredis.Client, error) {
	if !c.URL.Known() {
		return nil, keyErr("url", errors.New("unknown: its environment variable is not set"))
	}
	clientLoggerOnce.Do(func() { SetClientLogger(log) })
	o, err := c.options()
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	o.DialTimeout = c.DialTimeout
	o.ReadTimeout = c.Timeout
	o.WriteTimeout = c.Timeout
	o.PoolTimeout = c.Timeout
	o.ContextTimeoutEnabled = true
	o.PoolSize = c.PoolSize
	// The pipeline retries with its own policy and classification; a hidden retry
	// inside the client would stretch an attempt past its timeout.
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.ClientName = "fraiseql-observers"
	o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if c.CAFile != "" {
		roots, err := c.roots()
		if err != nil {
			return nil, keyErr("ca_file", err)
		}
		o.TLSConfig.RootCAs = roots
	}
	return goredis.NewClient(o), nil
}

// keyErr is a configuration error of one key; the wiring code reports it at the
// key's position.
func keyErr(key string, err error) error { return sinks.KeyErrorf(key, err) }
