package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/pipeline"
	natssink "github.com/fraiseql/fraiseql-observers/sinks/nats"
)

func init() { actionBuilders["nats"] = buildNATS }

// buildNATS builds a `type: nats` action (docs/actions/nats.md). Outside
// validate-config it connects and checks the stream: an unreachable server, refused
// credentials or a missing stream stop the service at start.
func buildNATS(b *builder, a *configs.Action) (pipeline.Sink, error) {
	var raw struct {
		natssink.Config
		URLEnv      configs.EnvRef `yaml:"url_env"`
		UserEnv     configs.EnvRef `yaml:"user_env"`
		PasswordEnv configs.EnvRef `yaml:"password_env"`
		TokenEnv    configs.EnvRef `yaml:"token_env"`
		NKeySeedEnv configs.EnvRef `yaml:"nkey_seed_env"`
	}
	if err := a.Decode(&raw); err != nil {
		return nil, err
	}
	cfg := raw.Config
	if err := oneOf(a, "url", &cfg.URL, raw.URLEnv, true); err != nil {
		return nil, err
	}
	cfg.User, cfg.Password = raw.UserEnv.Value(), raw.PasswordEnv.Value()
	cfg.Token, cfg.NKeySeed = raw.TokenEnv.Value(), raw.NKeySeedEnv.Value()
	for key, path := range map[string]string{"creds_file": cfg.CredsFile, "ca_file": cfg.CAFile} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			return nil, a.ErrorfAt(key, "%v", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, sinkConfigError(a, err)
	}
	if b.validateOnly {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout+cfg.Timeout+time.Second)
	defer cancel()
	s, err := natssink.Open(ctx, cfg, natssink.Options{Logger: b.log, ActionID: a.ID, Metrics: b.set})
	if err != nil {
		var ke interface{ ConfigKey() string }
		if errors.As(err, &ke) {
			return nil, sinkConfigError(a, err)
		}
		return nil, a.Errorf("%v", err)
	}
	return s, nil
}
