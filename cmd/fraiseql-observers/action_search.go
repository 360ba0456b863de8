package main

import (
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/search"
)

func init() { actionBuilders["search"] = buildSearch }

// searchKeys are the keys of a search action.
type searchKeys struct {
	search.Config `yaml:",inline"`
	URLEnv        configs.EnvRef `yaml:"url_env"`
	UsernameEnv   configs.EnvRef `yaml:"username_env"`
	PasswordEnv   configs.EnvRef `yaml:"password_env"`
	APIKeyEnv     configs.EnvRef `yaml:"api_key_env"`
}

func buildSearch(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var k searchKeys
	if err := a.Decode(&k); err != nil {
		return nil, err
	}
	if err := exclusive(a, "url", "url_env"); err != nil {
		return nil, err
	}
	if k.URLEnv.IsSet() {
		k.URL = k.URLEnv.Value()
	}
	k.Username = sinks.Secret(k.UsernameEnv.Value())
	k.Password = sinks.Secret(k.PasswordEnv.Value())
	k.APIKey = sinks.Secret(k.APIKeyEnv.Value())
	if err := k.Config.Validate(); err != nil {
		return nil, sinkConfigError(a, err)
	}
	if b.validateOnly {
		return nil, nil
	}
	s, err := search.New(k.Config, search.Options{Logger: b.log.With().Str("action", a.ID).Logger(), Metrics: b.set, Entity: b.entity(a)})
	if err != nil {
		return nil, sinkConfigError(a, err)
	}
	if k.BatchSize <= 1 {
		return sinks.Unbatched(s), nil
	}
	return s, nil
}
