package configs

import "strconv"

// Secret is a configuration string that must never be shown: it formats as
// "[redacted]" with the fmt verbs, %#v and encoding/json. Convert it with
// string(s) where the value is needed. Sink options structs may use it for keys
// like signing_secret.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString returns a redacted Go expression, for %#v.
func (s Secret) GoString() string { return `configs.Secret("` + s.String() + `")` }

// MarshalJSON encodes the secret as "[redacted]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// EnvRef is the value of a `*_env` key such as dsn_env or token_env: the name of
// an environment variable that holds a secret. Decoding checks that the variable
// is set and not empty and keeps its value; formatting shows only the name. The
// zero EnvRef means the key was not given.
type EnvRef struct {
	// Name is the environment variable's name.
	Name  string
	value string
}

// IsSet reports whether the key was given.
func (e EnvRef) IsSet() bool { return e.Name != "" }

// Value returns the variable's value as it was when the configuration was loaded.
func (e EnvRef) Value() string { return e.value }

// String returns the variable's name.
func (e EnvRef) String() string { return e.Name }

// GoString returns a Go expression that shows only the name, for %#v.
func (e EnvRef) GoString() string { return "configs.EnvRef{Name: " + strconv.Quote(e.Name) + "}" }
