package main

import (
	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// oneOf resolves a pair of keys such as url and url_env into the value: exactly one
// must be given (or none when optional).
func oneOf(a *configs.Action, key string, literal *string, env configs.EnvRef, required bool) error {
	switch {
	case *literal != "" && env.IsSet():
		return a.ErrorfAt(key+"_env", "%s and %s_env are mutually exclusive", key, key)
	case env.IsSet():
		*literal = env.Value()
	case *literal == "" && required:
		return a.ErrorfAt(key, "%s or %s_env is required", key, key)
	}
	return nil
}

// checkBrokerConfig checks, in this order, what the kafka and rabbitmq actions share:
// max_message_bytes is at most 1GiB, the sink's own validate passes, and the tls
// files load.
func checkBrokerConfig(a *configs.Action, maxMessageBytes configs.Size, tls *sinks.TLSFiles, validate func() error) error {
	if int64(maxMessageBytes) > 1<<30 {
		return a.ErrorfAt("max_message_bytes", "must be at most 1GiB")
	}
	if err := validate(); err != nil {
		return sinkConfigError(a, err)
	}
	if tls != nil {
		if _, err := tls.Config(); err != nil {
			return a.ErrorfAt("tls", "%v", err)
		}
	}
	return nil
}
