package eval

import (
	"bytes"
	"slices"
	"unicode/utf8"
)

// Plain references (`{{ name }}`, `{{ new.total }}`, `{{ data.customer.email }}`,
// `{{ data }}`) are rendered from the row's JSON, without running a program or
// decoding the value: numbers keep their exact text, objects their key order, and
// the common case allocates nothing. When the reference does not resolve plainly
// (a missing field, an unavailable value, ...) the program runs instead and gives
// the error, so both ways behave alike.

// appendRef appends reference r, or reports false to have the program run.
func (t *Template) appendRef(b []byte, r *colRef, env *Env) ([]byte, bool, error) {
	if r.row {
		row, _ := env.row(r.root)
		if row == nil {
			b, err := t.appendValue(b, nil)
			return b, true, err
		}
		start := len(b)
		b = compact(row.AppendJSON(b), start)
		if t.esc == EscapeGlob {
			b = globEscape(b, start)
		}
		return b, true, nil
	}
	row, _, i := env.index(r.root, r.col)
	if i < 0 {
		return b, false, nil
	}
	raw, ok := rawPath(row.Values[i], r.keys)
	if !ok {
		return b, false, nil
	}
	b, err := t.appendRaw(b, raw)
	return b, true, err
}

// appendRaw appends the JSON value raw as t's escape mode writes it.
func (t *Template) appendRaw(b []byte, raw []byte) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return t.decodeAppend(b, raw)
	}
	switch c := raw[0]; {
	case c == '"':
		body, ok := stringBody(raw)
		switch {
		case !ok || !utf8.Valid(body):
		case t.esc == EscapeJSON:
			return append(b, body...), nil // already JSON-escaped
		case bytes.IndexByte(body, '\\') < 0:
			start := len(b)
			b = append(b, body...)
			if t.esc == EscapeGlob {
				b = globEscape(b, start)
			}
			return b, nil
		}
	case c == '{' || c == '[':
		if end, ok := skipValue(raw, 0); !ok || end != len(raw) {
			break // malformed: decoding reports it
		}
		start := len(b)
		b = compact(append(b, raw...), start)
		if t.esc == EscapeGlob {
			b = globEscape(b, start)
		}
		return b, nil
	case validNumber(raw), string(raw) == "true", string(raw) == "false":
		return append(b, raw...), nil // no character to escape in any mode
	}
	return t.decodeAppend(b, raw)
}

func (t *Template) decodeAppend(b []byte, raw []byte) ([]byte, error) {
	v, err := decodeJSON(raw)
	if err != nil {
		return b, &Error{Line: 1, Column: 1, Msg: err.Error(), Err: err}
	}
	return t.appendValue(b, v)
}

// stringBody returns the text between the quotes of the JSON string raw, and
// whether it is well formed: no unescaped quote or control character, no escape
// running past the end.
func stringBody(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[len(raw)-1] != '"' {
		return nil, false
	}
	body := raw[1 : len(raw)-1]
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '\\':
			i++
			if i == len(body) {
				return nil, false
			}
		case c == '"' || c < 0x20:
			return nil, false
		}
	}
	return body, true
}

func isGlob(c byte) bool {
	return c == '*' || c == '?' || c == '[' || c == ']' || c == '\\'
}

// globEscape puts a backslash before every glob character of b[start:].
func globEscape(b []byte, start int) []byte {
	n := 0
	for _, c := range b[start:] {
		if isGlob(c) {
			n++
		}
	}
	if n == 0 {
		return b
	}
	end := len(b)
	b = slices.Grow(b, n)[:end+n]
	j := end + n - 1
	for i := end - 1; i >= start; i-- {
		c := b[i]
		b[j] = c
		j--
		if isGlob(c) {
			b[j] = '\\'
			j--
		}
	}
	return b
}

// compact removes the whitespace between the tokens of the JSON text b[start:], in
// place.
func compact(b []byte, start int) []byte {
	w := start
	in := false
	for r := start; r < len(b); r++ {
		c := b[r]
		switch {
		case in && c == '\\' && r+1 < len(b):
			b[w], b[w+1] = c, b[r+1]
			w += 2
			r++
			continue
		case c == '"':
			in = !in
		case !in && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			continue
		}
		b[w] = c
		w++
	}
	return b[:w]
}
