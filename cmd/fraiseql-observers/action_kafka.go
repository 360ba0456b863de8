package main

import (
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/kafka"
)

func init() { actionBuilders["kafka"] = buildKafka }

// kafkaAction is the YAML shape of a `type: kafka` action (docs/actions/kafka.md).
type kafkaAction struct {
	Brokers         []string        `yaml:"brokers"`
	BrokersEnv      configs.EnvRef  `yaml:"brokers_env"`
	Topic           string          `yaml:"topic"`
	Timeout         time.Duration   `yaml:"timeout"`
	Acks            string          `yaml:"acks"`
	Compression     string          `yaml:"compression"`
	MaxMessageBytes configs.Size    `yaml:"max_message_bytes"`
	TLS             *sinks.TLSFiles `yaml:"tls"`
	SASLMechanism   string          `yaml:"sasl_mechanism"`
	Username        string          `yaml:"username"`
	UsernameEnv     configs.EnvRef  `yaml:"username_env"`
	PasswordEnv     configs.EnvRef  `yaml:"password_env"`
}

func buildKafka(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var ya kafkaAction
	if err := a.Decode(&ya); err != nil {
		return nil, err
	}
	cfg := kafka.Config{
		Brokers:         ya.Brokers,
		Topic:           ya.Topic,
		Timeout:         ya.Timeout,
		Acks:            ya.Acks,
		Compression:     ya.Compression,
		MaxMessageBytes: int(ya.MaxMessageBytes),
		TLS:             ya.TLS,
		SASLMechanism:   strings.ToUpper(ya.SASLMechanism),
		Username:        ya.Username,
		Password:        ya.PasswordEnv.Value(),
	}
	switch {
	case ya.BrokersEnv.IsSet() && len(ya.Brokers) > 0:
		return nil, a.ErrorfAt("brokers_env", "brokers and brokers_env are mutually exclusive")
	case ya.BrokersEnv.IsSet():
		cfg.Brokers = nil
		for _, s := range strings.Split(ya.BrokersEnv.Value(), ",") {
			if s = strings.TrimSpace(s); s != "" {
				cfg.Brokers = append(cfg.Brokers, s)
			}
		}
	}
	if err := oneOf(a, "username", &cfg.Username, ya.UsernameEnv, false); err != nil {
		return nil, err
	}
	if err := checkBrokerConfig(a, ya.MaxMessageBytes, ya.TLS, cfg.Validate); err != nil {
		return nil, err
	}
	if b.validateOnly {
		return nil, nil
	}
	if cfg.Acks == kafka.AcksLeader {
		b.log.Warn().Str("action", a.ID).
			Msg("kafka acks: leader; an acknowledged event is lost if the partition leader fails before followers copy it")
	}
	s, err := kafka.New(cfg, kafka.Options{Logger: b.log.With().Str("action", a.ID).Logger()})
	if err != nil {
		return nil, a.Errorf("%v", err)
	}
	return s, nil
}
