package configs

import (
	"fmt"
	"reflect"
)

// Action is one entry of an observer's actions list. The loader reads its
// type and name; the rest of the mapping is specific to the sink and stays raw
// YAML until the wiring code calls Decode with the sink's options struct.
// An Action is read-only after loading and safe for concurrent use.
type Action struct {
	// Type selects the sink ("webhook", "slack", ...).
	Type string
	// Name is the optional name written in the file.
	Name string
	// Ordered, when set, delivers the action's events one at a time in commit
	// order, whatever concurrent_execution says.
	Ordered bool
	// MaxConcurrency, when not 0, replaces concurrent_execution.max_concurrency
	// for this action.
	MaxConcurrency int
	// ID identifies the action in checkpoints, the DLQ, metrics and logs:
	// "<observer>.<name>", or "<observer>.<index>" (from 0) without a name.
	// IDs are unique within a configuration.
	ID string
	// Pos is where the action's mapping starts; TypePos where its type is.
	Pos     Pos
	TypePos Pos

	rawMapping
}

// Decode decodes the action's mapping, without the keys every action has (type,
// name, ordered, max_concurrency), into
// the struct v points to, as strictly as the loader does: keys match `yaml`
// struct tags (the lower-cased field name without one), unknown and mistyped
// keys are errors, ${VAR} references are expanded, time.Duration fields take
// Go duration strings, Size and Secret fields and the env tag option (url and
// url_env) work as in Config; giving both forms of a key is an error at the
// *_env one ("url and url_env are mutually exclusive").
// Fields whose key is absent or null keep their value, so v may hold defaults.
//
// The error is an *Errors with every problem, each at its file:line:column.
func (a *Action) Decode(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("decode action %s: need a non-nil pointer to a struct, got %T", a.ID, v)
	}
	if !a.loaded() {
		return fmt.Errorf("decode action %s: the action was not loaded from a configuration", a.ID)
	}
	errs := &Errors{}
	d := newYAMLDecoder(a.doc, errs)
	d.prefix = "action " + a.ID + ": "
	d.reportDuplicates = false // the loader reported them
	skip := func(entry) {}
	d.decodeStruct(value{node: a.node, kind: kindMapping, pos: a.Pos}, rv.Elem(), "", customKeys{"type": skip, "name": skip, "ordered": skip, "max_concurrency": skip})
	for _, c := range d.conflicts {
		errs.add(c.envValue, "action %s: %s: %s and %s are mutually exclusive", a.ID, c.path, c.lit, c.env)
	}
	return errs.err()
}

// Errorf returns an *Error at the action's position, for problems the wiring
// code finds ("url and url_env are mutually exclusive"). The message is
// prefixed with the action's id. Never put a secret value in it.
func (a *Action) Errorf(format string, args ...any) error {
	return &Error{Pos: a.Pos, Msg: "action " + a.ID + ": " + fmt.Sprintf(format, args...)}
}

// ErrorfAt is Errorf at the value of key, or at the action when the key is absent.
func (a *Action) ErrorfAt(key, format string, args ...any) error {
	return &Error{Pos: a.KeyPos(key), Msg: "action " + a.ID + ": " + key + ": " + fmt.Sprintf(format, args...)}
}

// KeyPos returns where the value of key is written in the action's mapping, or
// the action's position when the key is absent.
func (a *Action) KeyPos(key string) Pos { return a.keyPos(key, "", a.Pos) }

// Has reports whether the action's mapping has key, for mutually exclusive
// keys whose zero value is meaningful.
func (a *Action) Has(key string) bool {
	_, ok := a.lookupKey(key, "")
	return ok
}
