package configs

import (
	"strconv"
)

// Secret is a configuration value that must never be shown: a password, a token,
// a signing secret, a connection string. It formats as "[redacted]" with the fmt
// verbs, %#v and encoding/json; Value returns the value itself.
//
// A struct field of type Secret (or string) whose yaml tag has the option env is
// read by one mechanism for every key of the configuration: `yaml:"url,env"`
// accepts the key url (the value written in the file) and the key url_env (the
// name of an environment variable that holds it), mutually exclusive;
// `yaml:"password_env,env"` accepts only the environment variable. The variable
// is read when the configuration is loaded. The zero Secret means the key was
// not given.
type Secret struct {
	value string
	env   string // the variable named by a *_env key
	// unknown is set when the value could not be read at loading with
	// Options.DeferEnv: the variable (or a ${VAR} reference) is not set.
	unknown bool
}

const redacted = "[redacted]"

// NewSecret returns a secret holding value, as if written in the file.
func NewSecret(value string) Secret { return Secret{value: value} }

// EnvSecret returns a secret read from the environment variable name, which held
// value.
func EnvSecret(name, value string) Secret { return Secret{value: value, env: name} }

// Value returns the secret. It is "" when the key was not given and, with
// Options.DeferEnv, when the variable it names was not set.
func (s Secret) Value() string { return s.value }

// Env returns the name of the environment variable the secret was read from, or
// "" when it was written in the file.
func (s Secret) Env() string { return s.env }

// IsSet reports whether the key was given: a value written in the file, or a
// *_env key naming a variable, even one that was not set when the configuration
// was loaded with Options.DeferEnv.
func (s Secret) IsSet() bool { return s.value != "" || s.env != "" || s.unknown }

// Known reports whether the value could be read: false only for a secret that is
// set but whose variable was unset when the configuration was loaded with
// Options.DeferEnv. Checks of the value itself apply only to known secrets.
func (s Secret) Known() bool { return !s.unknown }

// String returns "[redacted]", or "" for a secret that was not given.
func (s Secret) String() string {
	if !s.IsSet() {
		return ""
	}
	return redacted
}

// GoString returns a Go expression that shows only the variable's name, for %#v.
func (s Secret) GoString() string {
	if s.env != "" {
		return "configs.Secret{env: " + strconv.Quote(s.env) + "}"
	}
	return `configs.Secret("` + s.String() + `")`
}

// MarshalJSON encodes the secret as "[redacted]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }
