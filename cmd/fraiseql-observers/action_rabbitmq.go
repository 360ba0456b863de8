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
	if err := oneOf(a, "url", &cfg.URL, ya.URLEnv, false); err != nil {
		return nil, err
	}
	if err := checkBrokerConfig(a, ya.MaxMessageBytes, ya.TLS, cfg.Validate); err != nil {
		return nil, err
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
