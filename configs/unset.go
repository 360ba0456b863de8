package configs

import (
	"reflect"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Unset is a reference to an environment variable that was not set, or was
// empty, when a configuration was loaded with Options.DeferEnv: a *_env key, or a
// ${NAME} reference without a default. The value it would give is unknown.
type Unset struct {
	Pos Pos
	// Key is the key holding the reference: "source.dsn_env", "admin.listen", or
	// for an action "url_env", "smtp.password_env", "signing_secrets_env[1]".
	Key string
	// Var is the variable's name.
	Var string
	// Empty is set when the variable is set but empty (only *_env keys refuse an
	// empty variable).
	Empty bool
	ref   bool // a ${NAME} reference, not a *_env key
}

// String returns "key: environment variable NAME is not set", the message start
// refuses to load with.
func (u Unset) String() string {
	if u.Empty {
		return u.Key + ": environment variable " + u.Var + " is empty"
	}
	return u.Key + ": environment variable " + u.Var + " is not set"
}

// envName returns the variable's name, for a Secret that is set but unknown.
func (u Unset) envName() string {
	if u.ref {
		return ""
	}
	return u.Var
}

// under reports whether u is about key or a key inside it: "source" holds
// "source.dsn_env"; "url" holds "url" and "url_env"; "smtp" holds
// "smtp.password_env"; "signing_secrets_env" holds "signing_secrets_env[0]".
func (u Unset) under(key string) bool {
	k := u.Key
	if i := strings.IndexByte(k, '['); i >= 0 {
		k = k[:i]
	}
	return k == key || k == key+"_env" || k == key+"s_env" || strings.HasPrefix(u.Key, key+".") || strings.HasPrefix(u.Key, key+"[")
}

// Unset returns the references of the configuration's own sections (not of its
// actions: see Action.Unset) to variables that were not set when it was loaded
// with Options.DeferEnv, in file order. It is empty after a strict load, which
// refuses them.
func (c *Config) Unset() []Unset { return slices.Clone(c.unset) }

// Need returns an error, an *Errors at the positions of the references, when
// one of keys ("source.dsn", "admin", "state.schema") or a key inside it refers
// to a variable that was not set at loading (Options.DeferEnv); nil otherwise.
// Commands that run without the service's whole environment call it for the
// keys they use.
func (c *Config) Need(keys ...string) error {
	errs := &Errors{}
	for _, u := range c.unset {
		for _, k := range keys {
			if u.under(k) {
				errs.add(u.Pos, "%s", u.String())
				break
			}
		}
	}
	return errs.err()
}

// Unset returns the action's references to environment variables that are not
// set, or empty (*_env keys) when the configuration was loaded with
// Options.DeferEnv, in file order; for a strict load it returns nil (Decode
// reports them as errors). Keys are relative to the action ("url_env",
// "smtp.password_env").
func (a *Action) Unset() []Unset { return a.unset() }

// scanUnset collects the unset variables that the values under n refer to: the
// names given by *_env keys, and ${NAME} references in other strings. Decoding
// errors are not its business (Decode reports them).
func (d *yamlDecoder) scanUnset(n ast.Node, path string) {
	v, ok := d.value(n, path)
	if !ok {
		return // an unset ${NAME} was recorded, or an error Decode reports
	}
	switch v.kind {
	case kindMapping:
		for _, e := range d.entries(v.mapping(), path) {
			p := join(path, e.key)
			if !strings.HasSuffix(e.key, "_env") {
				d.scanUnset(e.value, p)
				continue
			}
			var discard string
			d.literal = true
			ev, ok := d.value(e.value, p)
			d.literal = false
			switch {
			case !ok:
			case ev.kind == kindString:
				d.setFromEnv(ev, reflect.ValueOf(&discard).Elem(), p)
			case ev.kind == kindSequence:
				for i, el := range ev.sequence() {
					d.literal = true
					xv, ok := d.value(el, index(p, i))
					d.literal = false
					if ok && xv.kind == kindString {
						d.setFromEnv(xv, reflect.ValueOf(&discard).Elem(), index(p, i))
					}
				}
			}
		}
	case kindSequence:
		for i, el := range v.sequence() {
			d.scanUnset(el, index(path, i))
		}
	}
}

// unresolved reports whether pos is where a value that could not be read starts
// (Options.DeferEnv): checks of that value are skipped.
func (l *loader) unresolved(pos Pos) bool {
	if l.d == nil {
		return false
	}
	for _, u := range l.d.unset {
		if u.Pos == pos {
			return true
		}
	}
	return false
}
