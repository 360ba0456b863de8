package rabbitmq

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Defaults.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultMaxMessageBytes = 128 << 20 // RabbitMQ's default max_message_size (3.8+)
)

// Config is the rabbitmq action configuration (YAML keys of a `type: rabbitmq`
// action). Zero values mean the documented defaults, which Defaults fills.
type Config struct {
	// URL is amqp://user:pass@host:port/vhost or amqps://... (TLS, verified): url,
	// or url_env naming the variable that holds it.
	URL configs.Secret `yaml:"url,env"`
	// Exchange is an EscapeNone template naming the exchange; "" is the default
	// exchange, which routes by queue name.
	Exchange string `yaml:"exchange"`
	// RoutingKey is an EscapeNone template ("{{ event.table }}.{{ event.op }}").
	RoutingKey string `yaml:"routing_key"`
	// Mandatory (default true) publishes with the mandatory flag: a message no
	// queue is bound for is returned and the delivery fails permanently (class
	// unroutable). With false the broker drops it and the delivery still succeeds.
	Mandatory *bool `yaml:"mandatory"`
	// Timeout bounds one delivery: connecting, publishing and waiting for the
	// publisher confirms (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxMessageBytes refuses larger messages before publishing (default 128MiB,
	// RabbitMQ's default max_message_size).
	MaxMessageBytes configs.Size `yaml:"max_message_bytes"`
	// Declare, when set, declares an exchange on every (re)connection.
	Declare *Declare `yaml:"declare"`
	// TLS configures amqps:// connections (default: verify against the system roots).
	TLS *sinks.TLSFiles `yaml:"tls"`
	// Batch is batch_size: the most events one delivery publishes on one channel
	// (default pipeline.batch_size).
	sinks.Batch `yaml:",inline"`
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

// Defaults fills the keys left out: timeout 10s, max_message_bytes 128MiB, and
// declare's name (the exchange, when it has no placeholder) and kind (topic).
func (c *Config) Defaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.Declare != nil {
		d := *c.Declare // the caller's Declare stays as it is
		if ex, err := eval.CompileTemplate(c.Exchange, eval.EscapeNone, eval.Options{}); d.Name == "" && err == nil && ex.Static() {
			d.Name = c.Exchange
		}
		if d.Kind == "" {
			d.Kind = "topic"
		}
		c.Declare = &d
	}
}

// AllowUnroutable reports whether mandatory is false.
func (c *Config) AllowUnroutable() bool { return c.Mandatory != nil && !*c.Mandatory }

// Templates implements sinks.Templater: exchange, routing_key.
func (c *Config) Templates() []sinks.TemplateSource {
	return sinks.SetTemplates(sinks.TemplateSource{Key: "exchange", Src: c.Exchange}, sinks.TemplateSource{Key: "routing_key", Src: c.RoutingKey})
}

// Validate checks the configuration; it changes nothing, and zero values pass as
// their defaults. Its messages name the key at fault first ("routing_key: ...")
// and never contain the URL's password. It reads the TLS files.
func (c *Config) Validate() error {
	if c.MaxMessageBytes > 1<<30 {
		return sinks.KeyErrorf("max_message_bytes", errors.New("must be at most 1GiB"))
	}
	if !c.URL.IsSet() {
		return sinks.KeyErrorf("url", errors.New("required"))
	}
	if c.URL.Known() {
		u, err := url.Parse(c.URL.Value())
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
	if c.MaxMessageBytes < 0 {
		return sinks.KeyErrorf("max_message_bytes", errors.New("must not be negative"))
	}
	if d := c.Declare; d != nil {
		if d.Name == "" && (!ex.Static() || c.Exchange == "") {
			return sinks.KeyErrorf("declare", errors.New("name is required when exchange is a template or the default exchange"))
		}
		switch d.Kind {
		case "", "direct", "fanout", "topic", "headers":
		default:
			return sinks.KeyErrorf("declare", fmt.Errorf("kind must be direct, fanout, topic or headers, not %q", d.Kind))
		}
	}
	if err := c.Batch.Check(); err != nil {
		return err
	}
	if c.TLS != nil {
		if _, err := c.TLS.Config(); err != nil {
			return sinks.KeyErrorf("tls", err)
		}
	}
	return nil
}
