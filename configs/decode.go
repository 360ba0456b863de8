package configs

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// yamlDecoder turns YAML nodes into Go values strictly, collecting positioned
// errors. Struct fields are matched by their `yaml:"name"` tag (the lower-cased
// field name without one); anonymous struct fields without a name are inlined.
// A null value leaves the destination as it was, so pre-filled defaults stay.
type yamlDecoder struct {
	doc  *document
	errs *Errors
	// prefix starts every message, e.g. "action order_shipped.notify: ".
	prefix string
	// reportDuplicates is off when the loader has already reported them.
	reportDuplicates bool
	// literal turns ${VAR} expansion off, for the names in *_env keys.
	literal       bool
	visits, depth int
	// pos records where each decoded struct field was written, keyed by a
	// pointer to the field.
	pos map[any]fieldPos
	// unset lists the references to variables that were not set, with
	// document.deferEnv (otherwise they are errors).
	unset []Unset
	// conflicts lists the fields given both as key and key_env.
	conflicts []conflict
}

// conflict is a field written both as key (lit) and as key_env (env).
type conflict struct {
	ptr      any // the field
	lit, env string
	path     string // of the *_env key
	// envKey and envValue are where the key_env entry is.
	envKey, envValue Pos
}

// fieldPos is where a key and its value were written; for a string, also the
// text before ${VAR} expansion.
type fieldPos struct {
	key, value Pos
	node       ast.Node // the value as written, for textWhere
	raw        string
	expanded   bool
	// ok is false when decoding the value failed (and was reported), or when it
	// could not be read (an unset variable with document.deferEnv).
	ok bool
	// env is set when the value was given through the key's *_env form.
	env bool
}

func newYAMLDecoder(doc *document, errs *Errors) *yamlDecoder {
	return &yamlDecoder{doc: doc, errs: errs, reportDuplicates: true, pos: make(map[any]fieldPos)}
}

// errorf records an error at pos about the key at path.
func (d *yamlDecoder) errorf(pos Pos, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	d.errs.add(pos, "%s%s", d.prefix, msg)
}

// typeError reports a value of the wrong kind.
func (d *yamlDecoder) typeError(v value, path, want string) {
	if v.kind == kindMapping || v.kind == kindSequence || v.kind == kindNull {
		d.errorf(v.pos, path, "expected %s, got %s", want, v.kind)
		return
	}
	d.errorf(v.pos, path, "expected %s, got %s %s", want, v.kind, v.show())
}

// has reports whether the field ptr points to was written in the file.
func (d *yamlDecoder) has(ptr any) bool {
	_, ok := d.pos[ptr]
	return ok
}

// where returns where the value of the field ptr points to was written, or
// fallback when it was not.
func (d *yamlDecoder) where(ptr any, fallback Pos) Pos {
	if p, ok := d.pos[ptr]; ok {
		return p.value
	}
	return fallback
}

// written reports whether the configuration file sets the field ptr points to.
func (d *yamlDecoder) written(ptr any) bool {
	_, ok := d.pos[ptr]
	return ok
}

// conflict returns the conflict of the field ptr points to (given both as key
// and key_env), or nil.
func (d *yamlDecoder) conflict(ptr any) *conflict {
	for i := range d.conflicts {
		if d.conflicts[i].ptr == ptr {
			return &d.conflicts[i]
		}
	}
	return nil
}

// textWhere returns where the text of the string field ptr points to starts (see
// document.textPos), or fallback when it was not written.
func (d *yamlDecoder) textWhere(ptr any, fallback Pos) Pos {
	if p, ok := d.pos[ptr]; ok {
		return d.doc.textPos(p.node)
	}
	return fallback
}

// keyWhere returns where the key of the field ptr points to was written, or
// fallback when it was not.
func (d *yamlDecoder) keyWhere(ptr any, fallback Pos) Pos {
	if p, ok := d.pos[ptr]; ok {
		return p.key
	}
	return fallback
}

var (
	durationType     = reflect.TypeFor[time.Duration]()
	sizeType         = reflect.TypeFor[Size]()
	replayWindowType = reflect.TypeFor[ReplayWindow]()
	secretType       = reflect.TypeFor[Secret]()
	tableRefType     = reflect.TypeFor[TableRef]()
)

// decode decodes n into rv, which must be settable, and returns the resolved
// value (ok=false after an error that left rv untouched).
func (d *yamlDecoder) decode(n ast.Node, rv reflect.Value, path string) (value, bool) {
	if d.depth >= maxDepth {
		d.errorf(d.doc.posOf(n), path, "values nest too deeply (more than %d levels)", maxDepth)
		return value{}, false
	}
	d.depth++
	defer func() { d.depth-- }()
	v, ok := d.value(n, path)
	if !ok {
		return value{}, false
	}
	if v.kind != kindNull {
		d.decodeValue(v, rv, path)
	}
	return v, true
}

// decodeOwnType decodes the package's own value types (durations, sizes, the replay
// window, secrets, table names); it returns false when rv is none of them.
func (d *yamlDecoder) decodeOwnType(v value, rv reflect.Value, path string) bool {
	switch rv.Type() {
	case durationType:
		d.decodeDuration(v, rv, path)
		return true
	case sizeType:
		d.decodeSize(v, rv, path)
		return true
	case replayWindowType:
		d.decodeReplayWindow(v, rv, path)
		return true
	case secretType:
		switch v.kind {
		case kindString, kindInt, kindFloat, kindBool:
			rv.Set(reflect.ValueOf(Secret{value: v.str}))
		default:
			d.typeError(v, path, "a string")
		}
		return true
	case tableRefType:
		if v.kind != kindString {
			d.typeError(v, path, `a table name ("schema.table" or "table")`)
			return true
		}
		t, err := parseTableRef(v.str)
		if err != nil {
			d.errorf(v.pos, path, "invalid table name %s: %v", v.show(), err)
			return true
		}
		rv.Set(reflect.ValueOf(t))
		return true
	default:
		return false
	}
}

func (d *yamlDecoder) decodeValue(v value, rv reflect.Value, path string) {
	if d.decodeOwnType(v, rv, path) {
		return
	}
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			rv.Set(reflect.New(rv.Type().Elem()))
		}
		d.decodeValue(v, rv.Elem(), path)
	case reflect.String:
		switch v.kind {
		case kindString, kindInt, kindFloat, kindBool:
			rv.SetString(v.str)
		default:
			d.typeError(v, path, "a string")
		}
	case reflect.Bool:
		d.decodeBool(v, rv, path)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := d.integer(v, path)
		if !ok {
			return
		}
		if n.neg && n.abs > math.MaxInt64+1 || !n.neg && n.abs > math.MaxInt64 || rv.OverflowInt(n.int64()) {
			d.errorf(v.pos, path, "%s is out of range", v.show())
			return
		}
		rv.SetInt(n.int64())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := d.integer(v, path)
		if !ok {
			return
		}
		if n.neg && n.abs != 0 {
			d.errorf(v.pos, path, "must not be negative, got %s", v.show())
			return
		}
		if rv.OverflowUint(n.abs) {
			d.errorf(v.pos, path, "%s is out of range", v.show())
			return
		}
		rv.SetUint(n.abs)
	case reflect.Float32, reflect.Float64:
		d.decodeFloat(v, rv, path)
	case reflect.Slice:
		if v.kind != kindSequence {
			d.typeError(v, path, "a list")
			return
		}
		els := v.sequence()
		s := reflect.MakeSlice(rv.Type(), len(els), len(els))
		for i, el := range els {
			d.decode(el, s.Index(i), index(path, i))
		}
		rv.Set(s)
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			d.errorf(v.pos, path, "internal error: map keys of type %s are not supported", rv.Type().Key())
			return
		}
		if v.kind != kindMapping {
			d.typeError(v, path, "a mapping")
			return
		}
		if rv.IsNil() {
			rv.Set(reflect.MakeMap(rv.Type()))
		}
		for _, e := range d.entries(v.mapping(), path) {
			el := reflect.New(rv.Type().Elem()).Elem()
			d.decode(e.value, el, join(path, e.key))
			rv.SetMapIndex(reflect.ValueOf(e.key).Convert(rv.Type().Key()), el)
		}
	case reflect.Struct:
		d.decodeStruct(v, rv, path, nil)
	case reflect.Interface:
		if rv.NumMethod() != 0 {
			d.errorf(v.pos, path, "internal error: cannot decode into %s", rv.Type())
			return
		}
		d.decodeAny(v, rv, path)
	default:
		d.errorf(v.pos, path, "internal error: cannot decode into %s", rv.Type())
	}
}

// customKeys handles keys of a mapping outside the struct's fields.
type customKeys map[string]func(e entry)

// decodeStruct decodes a mapping into the struct rv. Keys in custom are
// handed to their function instead; any other key that is not a field is an
// error with a suggestion.
func (d *yamlDecoder) decodeStruct(v value, rv reflect.Value, path string, custom customKeys) {
	if v.kind != kindMapping {
		d.typeError(v, path, "a mapping")
		return
	}
	fields := fieldsOf(rv.Type())
	given := map[string]entry{} // field (its index path) → the key that gave it
	for _, e := range d.entries(v.mapping(), path) {
		if h, ok := custom[e.key]; ok {
			h(e)
			continue
		}
		i := slices.IndexFunc(fields, func(f structField) bool { return f.name == e.key })
		if i < 0 {
			d.unknownKey(e, path, fields, custom)
			continue
		}
		f := fields[i]
		fv := rv.FieldByIndex(f.index)
		var ptr any
		if fv.CanAddr() {
			ptr = fv.Addr().Interface()
		}
		field := fmt.Sprint(f.index)
		if first, dup := given[field]; dup && f.alt {
			// url and url_env: report at the *_env form, keep the first.
			lit, envKey := first.key, e.key
			envAt := e
			if strings.HasSuffix(first.key, "_env") {
				lit, envKey, envAt = e.key, first.key, first
			}
			d.conflicts = append(d.conflicts, conflict{ptr: ptr, lit: lit, env: envKey, path: join(path, envKey), envKey: envAt.keyPos, envValue: d.doc.posOf(envAt.value)})
			continue
		}
		given[field] = e
		fp := fieldPos{key: e.keyPos, value: d.doc.posOf(e.value), node: e.value, env: f.env}
		before, unsetBefore := len(d.errs.List), len(d.unset)
		var v value
		var ok bool
		if f.env {
			v, ok = d.decodeEnv(e.value, fv, join(path, e.key))
		} else {
			v, ok = d.decode(e.value, fv, join(path, e.key))
		}
		if ok {
			fp.value, fp.raw, fp.expanded = v.pos, v.raw, v.expanded
		}
		fp.ok = len(d.errs.List) == before && len(d.unset) == unsetBefore
		if len(d.unset) > unsetBefore && fv.Type() == secretType {
			// Given, but its value is unknown until the variable is set.
			fv.Set(reflect.ValueOf(Secret{env: d.unset[unsetBefore].envName(), unknown: true}))
		}
		if ptr != nil {
			d.pos[ptr] = fp
		}
	}
}

// decodeEnv decodes the value of a *_env key: the name of an environment
// variable (or, for a list field, a list of names), whose value goes into rv, a
// string or a Secret (or a list of them).
func (d *yamlDecoder) decodeEnv(n ast.Node, rv reflect.Value, path string) (value, bool) {
	d.literal = true
	v, ok := d.value(n, path)
	d.literal = false
	if !ok || v.kind == kindNull {
		return v, ok
	}
	if rv.Kind() == reflect.Slice {
		if v.kind != kindSequence {
			d.typeError(v, path, "a list of environment variable names")
			return v, true
		}
		els := v.sequence()
		list := reflect.MakeSlice(rv.Type(), len(els), len(els))
		for i, el := range els {
			d.literal = true
			ev, ok := d.value(el, index(path, i))
			d.literal = false
			if ok && ev.kind != kindNull {
				d.setFromEnv(ev, list.Index(i), index(path, i))
			}
		}
		rv.Set(list)
		return v, true
	}
	d.setFromEnv(v, rv, path)
	return v, true
}

// setFromEnv reads the variable v names into rv (a string or a Secret). An empty
// name leaves rv as it is: the caller decides whether the key may be empty.
func (d *yamlDecoder) setFromEnv(v value, rv reflect.Value, path string) {
	if v.kind != kindString {
		d.typeError(v, path, "the name of an environment variable")
		return
	}
	name := strings.TrimSpace(v.str)
	if name == "" {
		return
	}
	if strings.HasPrefix(name, "$") {
		d.errorf(v.pos, path, "expected the name of an environment variable (like PGDSN), not a reference to one: write %s", strings.Trim(name, "${}"))
		return
	}
	if !validEnvName(name) {
		// Not shown: a connection string or a token pasted here is a secret.
		d.errorf(v.pos, path, "the value is not an environment variable name (letters, digits and _, not starting with a digit): this key names the variable that holds the secret")
		return
	}
	val, ok := d.doc.lookup(name)
	switch {
	case (!ok || val == "") && d.doc.deferEnv:
		d.unset = append(d.unset, Unset{Pos: v.pos, Key: path, Var: name, Empty: ok})
	case !ok:
		d.errorf(v.pos, path, "environment variable %s is not set", name)
	case val == "":
		d.errorf(v.pos, path, "environment variable %s is empty", name)
	case rv.Type() == secretType:
		rv.Set(reflect.ValueOf(Secret{value: val, env: name}))
	case rv.Kind() == reflect.String:
		rv.SetString(val)
	default:
		d.errorf(v.pos, path, "internal error: cannot read an environment variable into %s", rv.Type())
	}
}

func (d *yamlDecoder) unknownKey(e entry, path string, fields []structField, custom customKeys) {
	known := make([]string, 0, len(fields)+len(custom))
	for _, f := range fields {
		known = append(known, f.name)
	}
	extra := make([]string, 0, len(custom))
	for k := range custom {
		extra = append(extra, k)
	}
	slices.Sort(extra)
	known = append(known, extra...)
	hint := DidYouMean(e.key, known)
	if hint == "" && len(known) > 0 && len(known) <= 16 {
		hint = "; valid keys: " + strings.Join(known, ", ")
	}
	d.errorf(e.keyPos, path, "unknown key %q%s", e.key, hint)
}

// decodeAny decodes into an empty interface: mappings become map[string]any,
// lists []any, integers int64 (uint64 above its range), numbers float64.
func (d *yamlDecoder) decodeAny(v value, rv reflect.Value, path string) {
	switch v.kind {
	case kindString:
		rv.Set(reflect.ValueOf(v.str))
	case kindBool:
		var b bool
		d.decodeBool(v, reflect.ValueOf(&b).Elem(), path)
		rv.Set(reflect.ValueOf(b))
	case kindInt:
		n, ok := d.integer(v, path)
		if !ok {
			return
		}
		if !n.neg && n.abs > math.MaxInt64 {
			rv.Set(reflect.ValueOf(n.abs))
		} else if n.neg && n.abs > math.MaxInt64+1 {
			d.errorf(v.pos, path, "%s is out of range", v.show())
		} else {
			rv.Set(reflect.ValueOf(n.int64()))
		}
	case kindFloat:
		var f float64
		d.decodeFloat(v, reflect.ValueOf(&f).Elem(), path)
		rv.Set(reflect.ValueOf(f))
	case kindSequence:
		els := v.sequence()
		list := make([]any, len(els))
		for i, el := range els {
			d.decode(el, reflect.ValueOf(&list[i]).Elem(), index(path, i))
		}
		rv.Set(reflect.ValueOf(list))
	case kindMapping:
		m := make(map[string]any)
		for _, e := range d.entries(v.mapping(), path) {
			var x any
			d.decode(e.value, reflect.ValueOf(&x).Elem(), join(path, e.key))
			m[e.key] = x
		}
		rv.Set(reflect.ValueOf(m))
	}
}

// structField is a decodable field: its YAML key and its index path.
type structField struct {
	name  string
	index []int
	// env is set for a *_env key: its value names the environment variable that
	// holds the field's value. alt is set for both keys of a field that has the
	// two forms (url and url_env).
	env, alt bool
}

var fieldCache sync.Map // reflect.Type → []structField

// fieldsOf returns the decodable fields of struct type t in declaration order.
func fieldsOf(t reflect.Type) []structField {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]structField)
	}
	var fields []structField
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "-" {
			continue
		}
		inline := f.Anonymous && tag == "" || strings.Contains(","+opts+",", ",inline,")
		if inline && f.Type.Kind() == reflect.Struct {
			for _, sub := range fieldsOf(f.Type) {
				sub.index = append([]int{i}, sub.index...)
				fields = append(fields, sub)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		switch {
		case !strings.Contains(","+opts+",", ",env,"):
			fields = append(fields, structField{name: tag, index: []int{i}})
		case strings.HasSuffix(tag, "_env"):
			fields = append(fields, structField{name: tag, index: []int{i}, env: true})
		default:
			fields = append(fields, structField{name: tag, index: []int{i}, alt: true},
				structField{name: tag + "_env", index: []int{i}, env: true, alt: true})
		}
	}
	fieldCache.Store(t, fields)
	return fields
}
