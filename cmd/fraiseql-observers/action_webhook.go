package main

import (
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/webhook"
)

func init() { actionBuilders["webhook"] = buildWebhook }

// webhookKeys are the keys of a webhook action: the sink's own and the *_env keys
// the loader resolves.
type webhookKeys struct {
	webhook.Config    `yaml:",inline"`
	URLEnv            configs.EnvRef   `yaml:"url_env"`
	SigningSecretEnv  configs.EnvRef   `yaml:"signing_secret_env"`
	SigningSecretsEnv []configs.EnvRef `yaml:"signing_secrets_env"`
}

func buildWebhook(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var k webhookKeys
	if err := a.Decode(&k); err != nil {
		return nil, err
	}
	if err := exclusive(a, "url", "url_env"); err != nil {
		return nil, err
	}
	if err := exclusive(a, "signing_secret", "signing_secret_env", "signing_secrets_env"); err != nil {
		return nil, err
	}
	if k.URLEnv.IsSet() {
		k.URL = k.URLEnv.Value()
	}
	if k.SigningSecretEnv.IsSet() {
		k.SigningSecret = sinks.Secret(k.SigningSecretEnv.Value())
	}
	for _, e := range k.SigningSecretsEnv {
		k.SigningSecrets = append(k.SigningSecrets, sinks.Secret(e.Value()))
	}
	if a.Has("signing_secrets_env") && len(k.SigningSecrets) == 0 {
		return nil, a.ErrorfAt("signing_secrets_env", "lists no environment variable")
	}
	if err := k.Config.Validate(); err != nil {
		return nil, sinkConfigError(a, err)
	}
	if b.validateOnly {
		return nil, nil
	}
	s, err := webhook.New(k.Config, webhook.Options{Logger: b.log.With().Str("action", a.ID).Logger(), Metrics: b.set, Entity: b.entity(a)})
	if err != nil {
		return nil, sinkConfigError(a, err)
	}
	if s.BatchSize() <= 1 {
		return sinks.Unbatched(s), nil
	}
	return s, nil
}
