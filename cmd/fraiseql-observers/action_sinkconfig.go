package main

import (
	"errors"

	"github.com/fraiseql/fraiseql-observers/configs"
)

// sinkConfigError reports a sink's validation error at the key it names (through a
// ConfigKey method in the error chain) or at the action. A template error is moved to
// the line and column it points at inside the key's value.
func sinkConfigError(a *configs.Action, err error) error {
	var ke interface {
		error
		ConfigKey() string
		Unwrap() error
	}
	if !errors.As(err, &ke) {
		return a.Errorf("%v", err)
	}
	key := ke.ConfigKey()
	if !a.Has(key) && a.Has(key+"_env") {
		key += "_env" // the value came from the environment: point at the variable's name
		return a.ErrorfAt(key, "%s", exprMsg(ke.Unwrap()))
	}
	if a.Has(key) {
		return &configs.Error{Pos: exprPos(a.KeyPos(key), ke.Unwrap()), Msg: "action " + a.ID + ": " + key + ": " + exprMsg(ke.Unwrap())}
	}
	return a.ErrorfAt(key, "%s", exprMsg(ke.Unwrap()))
}

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
