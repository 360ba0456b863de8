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
}

// fieldPos is where a key and its value were written; for a string, also the
// text before ${VAR} expansion.
type fieldPos struct {
	key, value Pos
	node       ast.Node // the value as written, for textWhere
	raw        string
	expanded   bool
	// ok is false when decoding the value failed (and was reported).
	ok bool
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
	envRefType       = reflect.TypeFor[EnvRef]()
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

func (d *yamlDecoder) decodeValue(v value, rv reflect.Value, path string) {
	switch rv.Type() {
	case durationType:
		d.decodeDuration(v, rv, path)
		return
	case sizeType:
		d.decodeSize(v, rv, path)
		return
	case replayWindowType:
		d.decodeReplayWindow(v, rv, path)
		return
	case envRefType:
		d.decodeEnvRef(v, rv, path)
		return
	case tableRefType:
		if v.kind != kindString {
			d.typeError(v, path, `a table name ("schema.table" or "table")`)
			return
		}
		t, err := parseTableRef(v.str)
		if err != nil {
			d.errorf(v.pos, path, "invalid table name %s: %v", v.show(), err)
			return
		}
		rv.Set(reflect.ValueOf(t))
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
		fv := rv.FieldByIndex(fields[i].index)
		fp := fieldPos{key: e.keyPos, value: d.doc.posOf(e.value), node: e.value}
		before := len(d.errs.List)
		d.literal = fv.Type() == envRefType
		v, ok := d.decode(e.value, fv, join(path, e.key))
		d.literal = false
		if ok {
			fp.value, fp.raw, fp.expanded = v.pos, v.raw, v.expanded
		}
		fp.ok = len(d.errs.List) == before
		if fv.CanAddr() {
			d.pos[fv.Addr().Interface()] = fp
		}
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
				fields = append(fields, structField{name: sub.name, index: append([]int{i}, sub.index...)})
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if tag == "" {
			tag = strings.ToLower(f.Name)
		}
		fields = append(fields, structField{name: tag, index: []int{i}})
	}
	fieldCache.Store(t, fields)
	return fields
}
