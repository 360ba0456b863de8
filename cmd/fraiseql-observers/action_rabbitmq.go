package main

import (
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/rabbitmq"
)

func init() { actionBuilders["rabbitmq"] = buildRabbitMQ }

// rabbitmqAction is the YAML shape of a `type: rabbitmq` action
// (docs/actions/rabbitmq.md).
type rabbitmqAction struct {
	URL             configs.Secret    `yaml:"url"`
	URLEnv          configs.EnvRef    `yaml:"url_env"`
	Exchange        string            `yaml:"exchange"`
	RoutingKey      string            `yaml:"routing_key"`
	Mandatory       *bool             `yaml:"mandatory"`
	Timeout         time.Duration     `yaml:"timeout"`
	MaxMessageBytes configs.Size      `yaml:"max_message_bytes"`
	Declare         *rabbitmq.Declare `yaml:"declare"`
	TLS             *sinks.TLSFiles   `yaml:"tls"`
}

func buildRabbitMQ(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var ya rabbitmqAction
	if err := a.Decode(&ya); err != nil {
		return nil, err
	}
	cfg := rabbitmq.Config{
		URL:             string(ya.URL),
		Exchange:        ya.Exchange,
		RoutingKey:      ya.RoutingKey,
		AllowUnroutable: ya.Mandatory != nil && !*ya.Mandatory,
		Timeout:         ya.Timeout,
		MaxMessageBytes: int(ya.MaxMessageBytes),
		Declare:         ya.Declare,
		TLS:             ya.TLS,
	}
	if ya.URLEnv.IsSet() {
		if ya.URL != "" {
			return nil, a.ErrorfAt("url_env", "url and url_env are mutually exclusive")
		}
		cfg.URL = ya.URLEnv.Value()
	}
	if int64(ya.MaxMessageBytes) > 1<<30 {
		return nil, a.ErrorfAt("max_message_bytes", "must be at most 1GiB")
	}
	if err := cfg.Validate(); err != nil {
		return nil, sinkConfigError(a, err)
	}
	if ya.TLS != nil {
		if _, err := ya.TLS.Config(); err != nil {
			return nil, a.ErrorfAt("tls", "%v", err)
		}
	}
	if b.validateOnly {
		return nil, nil
	}
	s, err := rabbitmq.New(cfg, rabbitmq.Options{Logger: b.log.With().Str("action", a.ID).Logger()})
	if err != nil {
		return nil, a.Errorf("%v", err)
	}
	return s, nil
}
