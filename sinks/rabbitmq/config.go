package rabbitmq

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Defaults.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultMaxMessageBytes = 128 << 20 // RabbitMQ's default max_message_size (3.8+)
)

// Config is the rabbitmq action configuration. The zero value of every field but
// URL and RoutingKey means its documented default.
type Config struct {
	// URL is amqp://user:pass@host:port/vhost or amqps://... (TLS, verified).
	URL string
	// Exchange is an EscapeNone template naming the exchange; "" is the default
	// exchange, which routes by queue name.
	Exchange string
	// RoutingKey is an EscapeNone template ("{{ event.table }}.{{ event.op }}").
	RoutingKey string
	// AllowUnroutable publishes without the mandatory flag: a message no queue is
	// bound for is dropped by the broker and the delivery still succeeds. By default
	// (false) it is returned and the delivery fails permanently (class unroutable).
	AllowUnroutable bool
	// Timeout bounds one delivery: connecting, publishing and waiting for the
	// publisher confirms (default 10s).
	Timeout time.Duration
	// MaxMessageBytes refuses larger messages before publishing (default 128MiB,
	// RabbitMQ's default max_message_size).
	MaxMessageBytes int
	// Declare, when set, declares an exchange on every (re)connection.
	Declare *Declare
	// TLS configures amqps:// connections (default: verify against the system roots).
	TLS *sinks.TLSFiles
}

// Declare describes an exchange to declare.
type Declare struct {
	// Name of the exchange (default: Exchange, which must then have no placeholder).
	Name string `yaml:"name"`
	// Kind is direct, fanout, topic (default) or headers.
	Kind string `yaml:"kind"`
	// Durable keeps the exchange across broker restarts (default false; set it).
	Durable bool `yaml:"durable"`
}

// Validate checks the configuration and fills defaults. Its messages name the key
// at fault first ("routing_key: ...") and never contain the URL's password.
func (c *Config) Validate() error {
	if c.URL == "" {
		return sinks.KeyErrorf("url", errors.New("required"))
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return sinks.KeyErrorf("url", errors.New("not a valid URL")) // url errors repeat the URL, password included
	}
	switch u.Scheme {
	case "amqp":
		if c.TLS != nil {
			return sinks.KeyErrorf("tls", errors.New("needs an amqps:// url"))
		}
	case "amqps":
	default:
		return sinks.KeyErrorf("url", fmt.Errorf("scheme must be amqp or amqps, not %q", u.Scheme))
	}
	if u.Host == "" {
		return sinks.KeyErrorf("url", errors.New("no host"))
	}
	ex, err := eval.CompileTemplate(c.Exchange, eval.EscapeNone, eval.Options{})
	if err != nil {
		return sinks.KeyErrorf("exchange", err)
	}
	if _, err := eval.CompileTemplate(c.RoutingKey, eval.EscapeNone, eval.Options{}); err != nil {
		return sinks.KeyErrorf("routing_key", err)
	}
	if c.RoutingKey == "" && c.Exchange == "" {
		return sinks.KeyErrorf("routing_key", errors.New("required with the default exchange (it names the queue)"))
	}
	if c.Timeout < 0 {
		return sinks.KeyErrorf("timeout", errors.New("must not be negative"))
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxMessageBytes < 0 {
		return sinks.KeyErrorf("max_message_bytes", errors.New("must not be negative"))
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if d := c.Declare; d != nil {
		if d.Name == "" {
			if !ex.Static() || c.Exchange == "" {
				return sinks.KeyErrorf("declare", errors.New("name is required when exchange is a template or the default exchange"))
			}
			d.Name = c.Exchange
		}
		switch d.Kind {
		case "":
			d.Kind = "topic"
		case "direct", "fanout", "topic", "headers":
		default:
			return sinks.KeyErrorf("declare", fmt.Errorf("kind must be direct, fanout, topic or headers, not %q", d.Kind))
		}
	}
	return nil
}
