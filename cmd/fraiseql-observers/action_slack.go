package main

import (
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/slack"
)

func init() { actionBuilders["slack"] = buildSlack }

// slackKeys are the keys of a slack action.
type slackKeys struct {
	slack.Config  `yaml:",inline"`
	WebhookURLEnv configs.EnvRef `yaml:"webhook_url_env"`
}

func buildSlack(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var k slackKeys
	if err := a.Decode(&k); err != nil {
		return nil, err
	}
	if err := exclusive(a, "webhook_url", "webhook_url_env"); err != nil {
		return nil, err
	}
	if k.WebhookURLEnv.IsSet() {
		k.WebhookURL = sinks.Secret(k.WebhookURLEnv.Value())
	}
	if err := k.Config.Validate(); err != nil {
		return nil, sinkConfigError(a, err)
	}
	if b.validateOnly {
		return nil, nil
	}
	s, err := slack.New(k.Config, slack.Options{Logger: b.log.With().Str("action", a.ID).Logger(), Metrics: b.set, Entity: b.entity(a)})
	if err != nil {
		return nil, sinkConfigError(a, err)
	}
	return s, nil
}
