package eval

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// MaxTemplateLen is the longest accepted template, in bytes.
const MaxTemplateLen = 64 << 10

// Escape says how a template writes the values of its placeholders.
type Escape uint8

// Escape modes.
const (
	// EscapeNone writes plain text: strings as they are, numbers as their exact text,
	// true/false, null as nothing, lists and objects as compact JSON, times as in the
	// event JSON (UTC, RFC 3339). For Slack, email, log lines and subjects.
	EscapeNone Escape = iota
	// EscapeJSON is for JSON bodies. A string is JSON-escaped without quotes, so
	// `"{{ name }}"` written inside quotes stays one string whatever name holds; any
	// other value is written as a JSON token (number text, true, false, null, an
	// object or list). See RenderJSON.
	EscapeJSON
	// EscapeGlob is for Redis key patterns: values are written as in EscapeNone with
	// *, ?, [, ] and \ escaped by a backslash, so an event value cannot widen a SCAN
	// MATCH; the template's own text keeps its glob characters (see HasGlob).
	EscapeGlob
)

// String returns "none", "json" or "glob".
func (e Escape) String() string {
	switch e {
	case EscapeJSON:
		return "json"
	case EscapeGlob:
		return "glob"
	}
	return "none"
}

// Template is compiled text with {{ expr }} placeholders. It is immutable and safe
// for concurrent use (each render needs its own Env).
//
// A placeholder holds one expression of the condition language; it ends at the
// first }} outside string literals and braces. Write a literal "{{" as {{ '{{' }}.
type Template struct {
	src   string
	esc   Escape
	parts []part
	glob  bool
	// budget bounds each render (defaults applied).
	budget Budget
}

type part struct {
	lit       string   // literal text, when prog is nil
	prog      *program // the placeholder
	line, col int      // where the placeholder's expression starts in the template
}

// CompileTemplate compiles src for the escape mode esc. A compile error is an *Error
// whose Line and Column point into src: an unclosed "{{", an empty placeholder, or an
// error of an expression.
func CompileTemplate(src string, esc Escape, opts Options) (*Template, error) {
	if len(src) > MaxTemplateLen {
		return nil, &Error{Line: 1, Column: 1, Msg: fmt.Sprintf("template longer than %d bytes", MaxTemplateLen)}
	}
	t := &Template{src: src, esc: esc, budget: opts.Budget.withDefaults()}
	lit := func(s string) {
		if s != "" {
			t.parts = append(t.parts, part{lit: s})
			t.glob = t.glob || hasGlob(s)
		}
	}
	for i := 0; ; {
		j := strings.Index(src[i:], "{{")
		if j < 0 {
			lit(src[i:])
			break
		}
		open := i + j
		lit(src[i:open])
		if esc == EscapeGlob && trailingBackslash(src[i:open]) {
			line, col := position(src, open-1)
			return nil, &Error{Line: line, Column: col, Msg: "a backslash before {{ would escape the value's first character; write \\\\ for a literal backslash"}
		}
		start := open + 2
		end := placeholderEnd(src, start)
		if end < 0 {
			line, col := position(src, open)
			return nil, &Error{Line: line, Column: col, Msg: "unclosed {{"}
		}
		line, col := position(src, start)
		if strings.TrimSpace(src[start:end]) == "" {
			return nil, &Error{Line: line, Column: col, Msg: "empty placeholder"}
		}
		p, err := compile(src[start:end], opts, false)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				return nil, e.shift(line, col)
			}
			return nil, err
		}
		t.parts = append(t.parts, part{prog: p, line: line, col: col})
		i = end + 2
	}
	return t, nil
}

// placeholderEnd returns the index of the "}}" closing the placeholder whose
// expression starts at i, skipping string literals and braces, or -1.
func placeholderEnd(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch c := s[i]; c {
		case '"', '\'', '`':
			i++
			for i < len(s) && s[i] != c {
				if s[i] == '\\' && c != '`' {
					i++
				}
				i++
			}
		case '{':
			depth++
		case '}':
			if depth == 0 && i+1 < len(s) && s[i+1] == '}' {
				return i
			}
			if depth > 0 {
				depth--
			}
		}
		i++
	}
	return -1
}

// position returns the 1-based line and column (in characters) of byte offset off.
func position(s string, off int) (line, col int) {
	line = 1 + strings.Count(s[:off], "\n")
	return line, 1 + utf8.RuneCountInString(s[strings.LastIndexByte(s[:off], '\n')+1:off])
}

// hasGlob reports whether literal text s has an unescaped *, ? or [.
func hasGlob(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

func trailingBackslash(s string) bool {
	n := 0
	for n < len(s) && s[len(s)-1-n] == '\\' {
		n++
	}
	return n%2 == 1
}

// String returns the template's source.
func (t *Template) String() string { return t.src }

// Static reports whether the template has no placeholders; it then renders to its
// source whatever the event.
func (t *Template) Static() bool {
	for _, p := range t.parts {
		if p.prog != nil {
			return false
		}
	}
	return true
}

// Columns returns the columns the template's placeholders read by a constant name,
// in source order (a name read twice is listed twice), with Line and Column
// pointing into the template. A check against the table's columns finds names that
// can never render, such as a generated column PostgreSQL does not replicate. The
// returned slice is the caller's.
func (t *Template) Columns() []ColumnRef {
	var out []ColumnRef
	for _, p := range t.parts {
		if p.prog == nil {
			continue
		}
		for _, c := range p.prog.cols {
			e := (&Error{Line: c.Line, Column: c.Column}).shift(p.line, p.col)
			c.Line, c.Column = e.Line, e.Column
			out = append(out, c)
		}
	}
	return out
}

// Escape returns the template's escape mode.
func (t *Template) Escape() Escape { return t.esc }

// HasGlob reports whether the template's own text has an unescaped glob character
// (*, ? or [). Values are always escaped, so a rendered EscapeGlob template is a
// pattern exactly when HasGlob is true: without it the result names one key.
func (t *Template) HasGlob() bool { return t.glob }

// Render renders the template for env's event. A failing placeholder (a missing
// field, an unavailable value, ...) is an *Error positioned in the template.
func (t *Template) Render(env *Env) (string, error) {
	b, err := t.RenderTo(make([]byte, 0, len(t.src)+64), env)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// RenderTo appends the rendered template to b and returns the extended slice. On
// error it returns b as it was passed.
func (t *Template) RenderTo(b []byte, env *Env) ([]byte, error) {
	start := len(b)
	if env != nil && env.ev != nil && env.begin(&t.budget) {
		defer env.end()
	}
	for _, p := range t.parts {
		if p.prog == nil {
			b = append(b, p.lit...)
			if int64(len(b)-start) > t.budget.MaxRenderedBytes {
				return b[:start], t.tooLarge(p.line, p.col)
			}
			continue
		}
		var err error
		if b, err = t.placeholder(b, p, env, t.budget.MaxRenderedBytes-int64(len(b)-start)); err == nil && int64(len(b)-start) > t.budget.MaxRenderedBytes {
			err = t.tooLarge(1, 1)
		}
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				err = e.shift(p.line, p.col)
			} else {
				// A value that cannot be written (names its type, not its content).
				err = &Error{Line: p.line, Column: p.col, Msg: err.Error(), Err: err}
			}
			return b[:start], err
		}
	}
	return b, nil
}

// ErrNotJSONTemplate is returned by RenderJSON for a template not compiled with
// EscapeJSON, whose values would not be JSON-safe.
var ErrNotJSONTemplate = errors.New("template is not an EscapeJSON template")

// RenderJSON appends a JSON document for env's event to b: the rendered template
// when it is valid JSON, else the rendered text as one JSON string (the original
// system's rule for webhook bodies, so a body template may also be plain text). It
// works only for EscapeJSON templates.
func (t *Template) RenderJSON(b []byte, env *Env) ([]byte, error) {
	if t.esc != EscapeJSON {
		return b, ErrNotJSONTemplate
	}
	start := len(b)
	b, err := t.RenderTo(b, env)
	if err != nil || json.Valid(b[start:]) {
		return b, err
	}
	s := string(b[start:])
	return decoder.AppendJSONString(b[:start], s), nil
}

func (t *Template) tooLarge(line, col int) *Error {
	return &Error{Line: max(line, 1), Column: max(col, 1), Err: ErrBudget,
		Msg: fmt.Sprintf("%v: the rendered template is larger than %d bytes (evaluation.max_rendered_bytes)", ErrBudget, t.budget.MaxRenderedBytes)}
}

// placeholder appends one placeholder's value; room is how many bytes the render may
// still grow, checked before a value is written.
func (t *Template) placeholder(b []byte, p part, env *Env, room int64) ([]byte, error) {
	if env == nil || env.ev == nil {
		return b, &Error{Line: 1, Column: 1, Msg: "no event environment"}
	}
	if r := p.prog.ref; r != nil {
		b, done, err := t.appendRef(b, r, env)
		if done || err != nil {
			return b, err
		}
	}
	v, err := p.prog.run(env)
	if err != nil {
		return b, err
	}
	if textSize(v, room) > room {
		return b, t.tooLarge(1, 1)
	}
	return t.appendValue(b, v)
}

func (t *Template) appendValue(b []byte, v any) ([]byte, error) {
	switch t.esc {
	case EscapeJSON:
		return appendJSONInner(b, v)
	case EscapeGlob:
		start := len(b)
		b, err := appendText(b, v)
		return globEscape(b, start), err
	}
	return appendText(b, v)
}
