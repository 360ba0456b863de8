// Package nats is the NATS JetStream action: each event is published as its JSON to a
// subject rendered from a template, with the header Nats-Msg-Id set to the event id,
// and counts as delivered once JetStream has acknowledged it (PubAck). JetStream drops
// a message whose id it has seen within the stream's duplicate window and acknowledges
// it with duplicate=true, which counts as delivered too: redeliveries after a crash or
// a lost PubAck are not stored twice.
package nats

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Defaults.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultDialTimeout = 5 * time.Second
	// MaxPending bounds the asynchronous publishes waiting for their PubAck, over all
	// concurrent batches of the sink; a batch that would pass it waits up to
	// StallWait for room, then its remaining events fail as transient (backpressure).
	MaxPending = 4000
)

// Config is the configuration of a `type: nats` action. The credentials come only
// from environment variables (user_env, password_env, token_env, nkey_seed_env).
// Zero values mean the documented defaults, which Defaults fills.
type Config struct {
	// URL is nats://host:port or tls://host:port (TLS, the server certificate verified
	// against the system roots or CAFile), or several separated by commas: url, or
	// url_env naming the variable that holds it. Required.
	URL configs.Secret `yaml:"url,env"`
	// CAFile is a PEM file of CA certificates to verify the server with, instead of the
	// system roots. It turns TLS on.
	CAFile string `yaml:"ca_file"`
	// CredsFile is a NATS credentials file (user JWT and nkey seed).
	CredsFile string `yaml:"creds_file"`
	// Subject is a template rendering the subject, e.g. "cdc.{{ event.table }}.{{
	// event.op }}". Values are written as they are; a rendered subject with a space, a
	// control character, an empty token or a wildcard (* or >) is a permanent failure
	// of that event. Required.
	Subject string `yaml:"subject"`
	// Stream, when set, is the JetStream stream that must store the events: the sink
	// checks at start that it exists (and, for a subject without placeholders, that its
	// subjects cover it), and every publish carries Nats-Expected-Stream so a message
	// captured by another stream is refused rather than stored elsewhere.
	Stream string `yaml:"stream"`
	// Timeout bounds the wait for each PubAck (5s).
	Timeout time.Duration `yaml:"timeout"`
	// DialTimeout bounds connecting to a server (5s).
	DialTimeout time.Duration `yaml:"dial_timeout"`

	// Batch is batch_size: the most events one asynchronous batch publishes
	// (default pipeline.batch_size).
	sinks.Batch `yaml:",inline"`

	// User and Password (user_env, password_env) authenticate with a user name
	// and password.
	User     configs.Secret `yaml:"user_env,env"`
	Password configs.Secret `yaml:"password_env,env"`
	// Token (token_env) authenticates with a token.
	Token configs.Secret `yaml:"token_env,env"`
	// NKeySeed (nkey_seed_env) authenticates with an nkey: the user seed ("SU...").
	NKeySeed configs.Secret `yaml:"nkey_seed_env,env"`
}

// Defaults fills the keys left out: timeout 5s, dial_timeout 5s.
func (c *Config) Defaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
}

// Templates implements sinks.Templater: subject.
func (c *Config) Templates() []sinks.TemplateSource {
	return sinks.SetTemplates(sinks.TemplateSource{Key: "subject", Src: c.Subject})
}

// Validate checks the configuration, compiling the subject template and looking
// at the files it names; it changes nothing, and zero values pass as their
// defaults. Its errors never quote a secret or the URL.
func (c *Config) Validate() error {
	if err := c.Connection().Check(); err != nil {
		return err
	}
	if c.Subject == "" {
		return keyErr("subject", errors.New("is required"))
	}
	t, err := eval.CompileTemplate(c.Subject, eval.EscapeNone, eval.Options{})
	if err != nil {
		return keyErr("subject", err)
	}
	if t.Static() {
		if err := CheckSubject(c.Subject); err != nil {
			return keyErr("subject", err)
		}
	}
	if c.Stream != "" && !validStreamName(c.Stream) {
		return keyErr("stream", errors.New("a stream name has no spaces, '.', '*', '>', '/' or '\\'"))
	}
	switch {
	case c.Timeout < 0:
		return keyErr("timeout", errors.New("must not be negative"))
	}
	return c.Batch.Check()
}

// checkURL checks one server URL without quoting it (it may hold a password).
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a valid URL")
	}
	switch u.Scheme {
	case "nats", "tls":
	default:
		return fmt.Errorf("scheme must be nats or tls, not %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	if u.RawQuery != "" || (u.Path != "" && u.Path != "/") {
		return errors.New("has a path or query; a server URL is scheme://[user:password@]host:port")
	}
	return nil
}

func validStreamName(s string) bool {
	return !strings.ContainsAny(s, " \t\r\n.*>/\\") && s != ""
}

// CheckSubject reports why s cannot be a subject to publish to: empty, an empty token
// (a leading, trailing or doubled '.'), whitespace or a control character, or a
// wildcard character.
func CheckSubject(s string) error {
	if s == "" {
		return errors.New("empty subject")
	}
	prev := byte('.')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c <= ' ' || c == 0x7f:
			return errors.New("subject has whitespace or a control character")
		case c == '*' || c == '>':
			return errors.New("subject has a wildcard (* or >)")
		case c == '.' && prev == '.':
			return errors.New("subject has an empty token")
		}
		prev = c
	}
	if prev == '.' {
		return errors.New("subject has an empty token")
	}
	return nil
}

// subjectMatches reports whether subject is matched by a stream's subject filter,
// with NATS wildcards: * is one token, > one or more trailing tokens.
func subjectMatches(filter, subject string) bool {
	ft := strings.Split(filter, ".")
	st := strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// keyErr is a configuration error of one key; the wiring code reports it at the
// key's position.
func keyErr(key string, err error) error { return sinks.KeyErrorf(key, err) }
