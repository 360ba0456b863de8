package main

import (
	"github.com/fraiseql/fraiseql-observers/configs"
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
