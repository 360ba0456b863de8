package configs

import (
	"fmt"
	"reflect"
	"slices"
)

// Section is a top-level section whose keys belong to a package configs does not
// import (transport: the transport package's Config, which embeds the nats
// action's connection keys). The loader checks that it is a mapping, reads its
// type key and keeps the rest raw until the wiring code calls Decode. A Section is
// read-only after loading and safe for concurrent use.
type Section struct {
	// Name is the section's key ("transport"); "" when the file has no such section.
	Name string
	// Type is the value of the section's type key, "" when absent.
	Type string
	// Pos is where the section's key is written; zero when the file has no such
	// section. TypePos is where its type is (Pos without one).
	Pos     Pos
	TypePos Pos

	rawMapping
}

// Present reports whether the file has the section (with at least one key).
func (s *Section) Present() bool { return s.loaded() }

// Decode decodes the section's mapping, type included, into the struct v points
// to, as strictly as Action.Decode does (unknown and mistyped keys, ${VAR}, *_env
// keys, durations, Size and Secret fields). An absent section decodes nothing.
// The error is an *Errors with every problem, each at its file:line:column.
func (s *Section) Decode(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("decode %s: need a non-nil pointer to a struct, got %T", s.Name, v)
	}
	if !s.Present() {
		return nil
	}
	errs := &Errors{}
	d := newYAMLDecoder(s.doc, errs)
	d.reportDuplicates = false // the loader reported them
	d.decodeStruct(value{node: s.node, kind: kindMapping, pos: s.Pos}, rv.Elem(), s.Name, nil)
	for _, c := range d.conflicts {
		errs.add(c.envValue, "%s: %s and %s are mutually exclusive", c.path, c.lit, c.env)
	}
	return errs.err()
}

// KeyPos returns where the value of key is written in the section, or the
// section's position when the key is absent.
func (s *Section) KeyPos(key string) Pos { return s.keyPos(key, s.Name, s.Pos) }

// Has reports whether the section has key.
func (s *Section) Has(key string) bool {
	_, ok := s.lookupKey(key, s.Name)
	return ok
}

// ErrorfAt returns an *Error at the value of key (or at the section when the key
// is absent), its message prefixed with "<section>.<key>: ". Never put a secret
// value in it.
func (s *Section) ErrorfAt(key, format string, args ...any) error {
	return &Error{Pos: s.KeyPos(key), Msg: s.Name + "." + key + ": " + fmt.Sprintf(format, args...)}
}

// Unset returns the section's references to environment variables that are not
// set (Options.DeferEnv), in file order, with keys relative to the section
// ("url_env"); nil after a strict load, where Decode reports them as errors.
func (s *Section) Unset() []Unset { return s.unset() }

// transportTypes are the values of transport.type.
var transportTypes = []string{"in_process", "nats"}

// decodeTransport reads the transport section's type and keeps the rest raw.
func (l *loader) decodeTransport(e entry) {
	s := &l.cfg.Transport
	s.Name, s.Pos, s.TypePos = "transport", e.keyPos, e.keyPos
	v, ok := l.d.value(e.value, s.Name)
	if !ok || v.kind == kindNull {
		return
	}
	if v.kind != kindMapping {
		l.d.typeError(v, s.Name, "a mapping (type: nats, url_env: NATS_URL, ...)")
		return
	}
	s.node, s.doc = v.mapping(), l.doc
	for _, te := range l.d.entries(v.mapping(), s.Name) {
		if te.key != "type" {
			continue
		}
		s.TypePos = l.doc.posOf(te.value)
		tv, _ := l.d.decode(te.value, reflect.ValueOf(&s.Type).Elem(), join(s.Name, "type"))
		if !slices.Contains(transportTypes, s.Type) {
			l.errorf(s.TypePos, "transport.type: unknown transport %s: expected %s%s", tv.show(), quoteList(transportTypes), DidYouMean(s.Type, transportTypes))
			s.Type = ""
		}
	}
}
