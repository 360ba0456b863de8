package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
)

// MaxFileSize is the largest configuration Load and Parse accept. A real
// configuration is a few kilobytes; a multi-megabyte one is a mistake (a log or
// a dump saved under the wrong name), and parsing it would only waste time.
const MaxFileSize = 1 << 20

// Load reads and parses the configuration file at path, resolving ${VAR}
// references and *_env keys with os.LookupEnv. See Parse. An error reading
// the file is returned wrapped ("load config: open ...: no such file or
// directory"); problems in its content are an *Errors.
func Load(path string) (*Config, []Warning, error) {
	return LoadWith(path, Options{})
}

// Options changes how LoadWith and ParseWith read a configuration. The zero value
// is what Load and Parse do.
type Options struct {
	// Lookup resolves ${VAR} references and *_env keys; nil means os.LookupEnv.
	Lookup func(string) (string, bool)
	// DeferEnv accepts references to environment variables that are not set (and
	// *_env keys naming empty ones): instead of errors they are listed by
	// Config.Unset and Action.Unset, the values they would give stay unknown (a
	// Secret is set but not Known, another key keeps its default), and the checks
	// of those values are skipped. Commands that run without the service's whole
	// environment (validate-config, the operator commands) load this way and ask
	// with Config.Need for what they use; start loads strictly.
	DeferEnv bool
}

// LoadWith is Load with options.
func LoadWith(path string, opts Options) (*Config, []Warning, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, nil, tooLarge(path, fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("load config: %w", err)
	}
	return ParseWith(path, data, opts)
}

func tooLarge(name string, size int64) error {
	errs := &Errors{}
	errs.add(Pos{File: name, Line: 1, Column: 1},
		"the file is %s, larger than the %s a configuration may have: is it the right file?",
		Size(size).human(), Size(MaxFileSize).human())
	return errs.err()
}

// Parse parses and validates the configuration in data; name is the file name
// used in positions. lookupEnv resolves ${VAR} references and *_env keys (nil
// means os.LookupEnv); tests pass a map's lookup.
//
// On success it returns the configuration with every default applied, and any
// warnings. Otherwise the error is an *Errors holding every problem found, each
// at its file:line:column; the warnings found so far are returned with it.
// A UTF-8 byte order mark and CRLF line ends are accepted. Parse does not
// keep data; the Config and warnings belong to the caller. It is safe for
// concurrent use when lookupEnv is, and never connects to anything.
func Parse(name string, data []byte, lookupEnv func(string) (string, bool)) (*Config, []Warning, error) {
	return ParseWith(name, data, Options{Lookup: lookupEnv})
}

// ParseWith is Parse with options.
func ParseWith(name string, data []byte, opts Options) (*Config, []Warning, error) {
	lookupEnv := opts.Lookup
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	if len(data) > MaxFileSize {
		return nil, nil, tooLarge(name, int64(len(data)))
	}
	l := &loader{
		doc:   &document{file: name, lookup: lookupEnv, deferEnv: opts.DeferEnv, lines: strings.Split(string(data), "\n")},
		errs:  &Errors{},
		start: Pos{File: name, Line: 1, Column: 1},
	}
	root := l.parseYAML(data)
	if root == nil {
		return nil, nil, l.errs.err()
	}
	l.d = newYAMLDecoder(l.doc, l.errs)
	l.cfg = Default()
	l.cfg.File = name
	if l.decodeTop(root) {
		l.validate()
	}
	l.cfg.unset = l.d.unset
	sortByPos(l.cfg.unset, func(u Unset) Pos { return u.Pos })
	sortByPos(l.warnings, func(w Warning) Pos { return w.Pos })
	if err := l.errs.err(); err != nil {
		return nil, l.warnings, err
	}
	return l.cfg, l.warnings, nil
}

// loader holds the state of one Parse.
type loader struct {
	doc      *document
	d        *yamlDecoder
	errs     *Errors
	warnings []Warning
	cfg      *Config
	start    Pos // 1:1, for problems of the file as a whole
	// sections holds where each top-level key is written.
	sections map[string]Pos
}

// errorf reports an error at pos, unless pos is a value that could not be read
// (Options.DeferEnv): it is not checked.
func (l *loader) errorf(pos Pos, format string, args ...any) {
	if !l.unresolved(pos) {
		l.errs.add(pos, format, args...)
	}
}

// quote quotes the string field ptr points to for a message; a value that
// came from ${VAR} is shown as written, never expanded.
func (l *loader) quote(ptr *string) string {
	if fp, ok := l.d.pos[ptr]; ok && fp.expanded {
		return value{kind: kindString, raw: fp.raw, expanded: true}.show()
	}
	return strconv.Quote(*ptr)
}

func (l *loader) warnf(pos Pos, format string, args ...any) {
	l.warnings = append(l.warnings, Warning{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

var utf8BOM = []byte("\ufeff")

// parseYAML parses data into the body of its single document. It returns nil
// after reporting the problem.
func (l *loader) parseYAML(data []byte) ast.Node {
	data = bytes.TrimPrefix(data, utf8BOM)
	if !utf8.Valid(data) {
		l.errorf(invalidUTF8Pos(l.doc.file, data), "the file is not valid UTF-8")
		return nil
	}
	// CRLF → LF keeps every line and column, and keeps \r out of block scalars.
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	// The parser's work grows with the square of the nesting depth and of the
	// width of a mapping: check the shape before it runs, cheaply on the bytes,
	// then exactly on the scanner's tokens.
	if se := prescanShape(data); se != nil {
		l.errorf(se.pos(l.doc.file, data), "%s", se.msg)
		return nil
	}
	tokens := lexer.Tokenize(string(data))
	if se := checkTokens(tokens); se != nil {
		l.errorf(se.pos(l.doc.file, data), "%s", se.msg)
		return nil
	}
	file, err := parser.Parse(tokens, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) {
			pos := l.doc.tokenPos(ye.GetToken())
			l.errorf(pos, "invalid YAML: %s%s", ye.GetMessage(), yamlHint(data, pos.Line))
		} else {
			// Other errors may quote the source; say nothing that could be a secret.
			l.errorf(l.start, "invalid YAML")
		}
		return nil
	}
	var bodies []ast.Node
	for _, d := range file.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		if _, isNull := d.Body.(*ast.NullNode); isNull {
			continue
		}
		bodies = append(bodies, d.Body)
	}
	switch len(bodies) {
	case 0:
		l.errorf(l.start, "the configuration is empty: it needs at least a source (see docs/configuration.md)")
		return nil
	case 1:
	default:
		l.errorf(l.doc.posOf(bodies[1]), "a configuration file holds one YAML document; found another one here")
		return nil
	}
	l.doc.anchors = make(map[string][]*ast.AnchorNode)
	l.doc.collectAnchors(bodies[0], 0)
	return bodies[0]
}

// bareStar matches a value that is a lone "*", which YAML reads as an alias.
var bareStar = regexp.MustCompile(`:\s+\*\s*(#.*)?$`)

// yamlHint explains the common mistakes behind a syntax error on line.
func yamlHint(data []byte, line int) string {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return ""
	}
	if bareStar.Match(lines[line-1]) {
		return ` (a bare * starts a YAML alias: write "*" for every table)`
	}
	return ""
}

// invalidUTF8Pos returns the position of the first byte of data that is not UTF-8.
func invalidUTF8Pos(file string, data []byte) Pos {
	line, col := 1, 1
	for len(data) > 0 {
		r, n := utf8.DecodeRune(data)
		if r == utf8.RuneError && n <= 1 {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		data = data[n:]
	}
	return Pos{File: file, Line: line, Column: col}
}

// decodeTop decodes the top-level mapping into l.cfg. It reports false when
// the document is not a mapping, so there is nothing to validate.
func (l *loader) decodeTop(root ast.Node) bool {
	v, ok := l.d.value(root, "")
	if !ok {
		return false
	}
	if v.kind != kindMapping {
		l.errorf(v.pos, "the configuration must be a mapping of keys such as source: and observers:, not %s", v.kind)
		return false
	}
	l.sections = make(map[string]Pos)
	var entities, observers, transport *entry
	l.d.decodeStruct(v, reflect.ValueOf(l.cfg).Elem(), "", customKeys{
		"entities":  func(e entry) { entities = &e },
		"observers": func(e entry) { observers = &e },
		"transport": func(e entry) { transport = &e },
	})
	for _, f := range fieldsOf(reflect.TypeFor[Config]()) {
		ptr := reflect.ValueOf(l.cfg).Elem().FieldByIndex(f.index).Addr().Interface()
		if l.d.has(ptr) {
			l.sections[f.name] = l.d.keyWhere(ptr, l.start)
		}
	}
	if entities != nil {
		l.sections["entities"] = entities.keyPos
		l.decodeEntities(*entities)
	}
	if transport != nil {
		l.sections["transport"] = transport.keyPos
		l.decodeTransport(*transport)
	}
	if observers != nil {
		l.sections["observers"] = observers.keyPos
		l.decodeObservers(*observers)
	}
	return true
}

// decodeEntities decodes the alias → table mapping.
func (l *loader) decodeEntities(e entry) {
	v, ok := l.d.value(e.value, "entities")
	if !ok || v.kind == kindNull {
		return
	}
	if v.kind != kindMapping {
		l.d.typeError(v, "entities", `a mapping of alias names to tables (Order: public.orders)`)
		return
	}
	for _, ent := range l.d.entries(v.mapping(), "entities") {
		path := join("entities", ent.key)
		if err := checkIdentifier(ent.key); err != nil {
			l.errorf(ent.keyPos, "entities: invalid alias %q: %v", ent.key, err)
			continue
		}
		tv, ok := l.d.value(ent.value, path)
		if !ok {
			continue
		}
		if tv.kind == kindNull {
			l.errorf(ent.keyPos, "%s: expected a table name (\"schema.table\" or \"table\"), got nothing", path)
			continue
		}
		var t TableRef
		l.d.decodeValue(tv, reflect.ValueOf(&t).Elem(), path)
		if t != (TableRef{}) {
			l.cfg.Entities[ent.key] = t
		}
	}
}
