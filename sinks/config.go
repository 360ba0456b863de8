package sinks

// KeyError is a configuration error about one key of an action ("url", "headers"),
// so the loader can point at the key's position in the file. Validate methods of
// sink configurations return it wrapped or bare; find it with errors.As.
type KeyError struct {
	Key string
	Err error
}

// KeyErrorf is a shorthand for &KeyError{Key: key, Err: err}.
func KeyErrorf(key string, err error) error { return &KeyError{Key: key, Err: err} }

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *KeyError) Unwrap() error { return e.Err }

// ConfigKey returns the configuration key the error is about.
func (e *KeyError) ConfigKey() string { return e.Key }

// Warner is implemented by a Config that can be valid yet doubtful (an email server
// reached in clear text). Warnings returns one *KeyError per finding; each is
// logged at its key's position and stops nothing.
type Warner interface {
	Warnings() []error
}

// DBUser is implemented by a Config whose sink may call the source database
// through Deps.DB: UsesDB reports whether this configuration does (a database
// action without dsn_env). The service sizes its pool of connections for them.
type DBUser interface {
	UsesDB() bool
}

// TemplateSource is one {{ }} template of an action's configuration: the key it is
// written under ("body_template") and its source text.
type TemplateSource struct {
	Key string
	Src string
}

// Templater is implemented by a Config with {{ }} templates: Templates returns the
// ones this configuration sets, so the service can check the columns they read
// against the table (a generated column, which PostgreSQL does not replicate before
// version 18, fails every render).
type Templater interface {
	Templates() []TemplateSource
}

// SetTemplates returns the sources of ts whose Src is not empty.
func SetTemplates(ts ...TemplateSource) []TemplateSource {
	out := ts[:0:0]
	for _, t := range ts {
		if t.Src != "" {
			out = append(out, t)
		}
	}
	return out
}
