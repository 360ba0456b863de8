package sinks

// Secret is a configuration string that must never be shown (a signing secret, a
// password, an API key): it formats as "[redacted]" with the fmt verbs, %#v and
// encoding/json. Convert it with string(s) where the value is needed.
type Secret string

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString returns a redacted Go expression, for %#v.
func (s Secret) GoString() string { return `sinks.Secret("` + s.String() + `")` }

// MarshalJSON encodes the secret as "[redacted]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }
