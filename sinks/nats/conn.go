package nats

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	natsio "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/configs"
)

// Connection is the connection part of a nats action's configuration (url/url_env,
// ca_file, creds_file, user_env/password_env, token_env, nkey_seed_env,
// dial_timeout), shared with the NATS transport so both are configured and checked
// alike. Config.Connection returns it.
type Connection struct {
	URL         configs.Secret `yaml:"url,env"`
	CAFile      string         `yaml:"ca_file"`
	CredsFile   string         `yaml:"creds_file"`
	DialTimeout time.Duration  `yaml:"dial_timeout"`
	User        configs.Secret `yaml:"user_env,env"`
	Password    configs.Secret `yaml:"password_env,env"`
	Token       configs.Secret `yaml:"token_env,env"`
	NKeySeed    configs.Secret `yaml:"nkey_seed_env,env"`
}

// Connection returns the connection keys of the action.
func (c *Config) Connection() Connection {
	return Connection{URL: c.URL, CAFile: c.CAFile, CredsFile: c.CredsFile, DialTimeout: c.DialTimeout,
		User: c.User, Password: c.Password, Token: c.Token, NKeySeed: c.NKeySeed}
}

// Check validates the connection keys: a URL is required, every URL is nats:// or
// tls:// with a host, the files named exist, at most one way to authenticate is
// used. Its errors are *sinks.KeyError naming the key and never quote a secret.
func (c Connection) Check() error {
	if !c.URL.IsSet() {
		return keyErr("url", errors.New("url or url_env is required"))
	}
	for _, kv := range [][2]string{{"creds_file", c.CredsFile}, {"ca_file", c.CAFile}} {
		if kv[1] == "" {
			continue
		}
		if _, err := os.Stat(kv[1]); err != nil {
			return keyErr(kv[0], err)
		}
	}
	if c.URL.Known() {
		for _, u := range strings.Split(c.URL.Value(), ",") {
			if err := checkURL(strings.TrimSpace(u)); err != nil {
				return keyErr("url", err)
			}
		}
	}
	methods := 0
	for _, set := range []bool{c.CredsFile != "", c.NKeySeed.IsSet(), c.User.IsSet() || c.Password.IsSet(), c.Token.IsSet()} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return keyErr("creds_file", errors.New("use one way to authenticate: creds_file, nkey_seed_env, user_env with password_env, or token_env"))
	}
	if c.User.IsSet() != c.Password.IsSet() {
		return keyErr("user_env", errors.New("user_env and password_env go together"))
	}
	if c.DialTimeout < 0 {
		return keyErr("dial_timeout", errors.New("must not be negative"))
	}
	return nil
}

// Dial connects to NATS with the connection keys (a zero DialTimeout means
// DefaultDialTimeout). The client reconnects on its own, forever, when the
// connection drops; log receives connection events. Close the returned connection
// to stop the client's goroutines. Secrets whose variable is unset are errors.
func (c Connection) Dial(log zerolog.Logger, extra ...natsio.Option) (*natsio.Conn, error) {
	for key, sec := range map[string]configs.Secret{"url": c.URL, "user_env": c.User, "password_env": c.Password, "token_env": c.Token, "nkey_seed_env": c.NKeySeed} {
		if !sec.Known() {
			return nil, keyErr(key, errors.New("unknown: its environment variable is not set"))
		}
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	opts, err := c.options(log)
	if err != nil {
		return nil, err
	}
	nc, err := natsio.Connect(c.URL.Value(), append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return nc, nil
}

func (c Connection) options(log zerolog.Logger) ([]natsio.Option, error) {
	opts := []natsio.Option{
		natsio.Name("fraiseql-observers"),
		natsio.Timeout(c.DialTimeout),
		natsio.MaxReconnects(-1),
		natsio.ReconnectWait(500 * time.Millisecond),
		natsio.DisconnectErrHandler(func(_ *natsio.Conn, err error) {
			log.Warn().Err(err).Msg("nats disconnected")
		}),
		natsio.ReconnectHandler(func(*natsio.Conn) { log.Info().Msg("nats reconnected") }),
		natsio.ErrorHandler(func(_ *natsio.Conn, _ *natsio.Subscription, err error) {
			log.Warn().Err(err).Msg("nats asynchronous error")
		}),
	}
	if c.CAFile != "" {
		opts = append(opts, natsio.RootCAs(c.CAFile))
	}
	switch {
	case c.CredsFile != "":
		opts = append(opts, natsio.UserCredentials(c.CredsFile))
	case c.NKeySeed.IsSet():
		kp, err := nkeys.FromSeed([]byte(c.NKeySeed.Value()))
		if err != nil {
			return nil, keyErr("nkey_seed_env", errors.New("not a valid nkey seed"))
		}
		pub, err := kp.PublicKey()
		if err != nil || !nkeys.IsValidPublicUserKey(pub) {
			return nil, keyErr("nkey_seed_env", errors.New("not a user nkey seed (SU...)"))
		}
		opts = append(opts, natsio.Nkey(pub, kp.Sign))
	case c.User.IsSet():
		opts = append(opts, natsio.UserInfo(c.User.Value(), c.Password.Value()))
	case c.Token.IsSet():
		opts = append(opts, natsio.Token(c.Token.Value()))
	}
	return opts, nil
}
