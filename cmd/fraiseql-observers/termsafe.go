package main

import (
	"io"
	"reflect"
	"unicode/utf8"
)

// Terminal safety. Commands print identifiers, errors and values that come from the
// database and the running service: a table named "esc\x1b[31mRED\x1b]0;PWNED\a"
// must not recolour the operator's terminal, set its title or ring its bell. Two
// uses of one escaping function:
//
//   - termWriter wraps the standard output and error of every command (run): no
//     control character except newline and tab ever reaches the terminal, whatever
//     printed it (a forgotten field, an error from a library, cobra).
//   - termSafe rewrites the strings of a document before its text form is printed,
//     escaping newlines and tabs too, so that a value cannot break a line or a
//     table column and pass for another line of output.
//
// JSON output needs neither (encoding/json escapes control characters), and the
// writer leaves it valid and equal in meaning: the only characters it could find
// there are inside strings, and it writes them as \u escapes.

// needsEscape reports whether r is written escaped: C0 controls and DEL, the C1
// controls (U+0080–U+009F: U+009B is a one-character CSI, U+0085 a line break),
// and the bidirectional formatting characters, which reorder what follows them.
func needsEscape(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}

const hexDigits = "0123456789abcdef"

// appendTermSafe appends s to dst with every rune needsEscape names escaped: \n,
// \r and \t as such, other ASCII controls as \xNN, other runes as \uNNNN, and a
// byte that is not UTF-8 as \xNN. With layout, newlines and tabs are kept. When
// partial is set, an incomplete UTF-8 sequence at the end of s is not consumed:
// appendTermSafe returns how many bytes of s it consumed.
func appendTermSafe(dst []byte, s []byte, layout, partial bool) ([]byte, int) {
	start := 0
	i := 0
	for i < len(s) {
		c := s[i]
		if c >= 0x20 && c < 0x7f || layout && (c == '\n' || c == '\t') {
			i++
			continue
		}
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			if partial && !utf8.FullRune(s[i:]) {
				break
			}
			r, size = utf8.DecodeRune(s[i:])
			if r != utf8.RuneError && !needsEscape(r) {
				i += size
				continue
			}
		}
		dst = append(dst, s[start:i]...)
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		case r == '\n':
			dst = append(dst, '\\', 'n')
		case r == '\r':
			dst = append(dst, '\\', 'r')
		case r == '\t':
			dst = append(dst, '\\', 't')
		case r < 0x80:
			dst = append(dst, '\\', 'x', hexDigits[r>>4], hexDigits[r&0xf])
		default:
			dst = append(dst, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		}
		i += size
		start = i
	}
	return append(dst, s[start:i]...), i
}

// termText returns s with every control character escaped, newlines and tabs
// included: for one value printed in a line or a table cell.
func termText(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			out, _ := appendTermSafe(nil, []byte(s), false, false)
			return string(out)
		}
	}
	return s
}

// termWriter writes to w with every control character other than newline and tab
// escaped (appendTermSafe). A UTF-8 sequence split between two writes is held until
// the next one. It is not safe for concurrent use.
type termWriter struct {
	w       io.Writer
	pending []byte
	buf     []byte
}

func newTermWriter(w io.Writer) *termWriter { return &termWriter{w: w} }

func (t *termWriter) Write(p []byte) (int, error) {
	data := p
	if len(t.pending) > 0 {
		data = append(t.pending, p...)
		t.pending = nil
	}
	out, used := appendTermSafe(t.buf[:0], data, true, true)
	t.buf = out[:0]
	if used < len(data) {
		t.pending = append([]byte(nil), data[used:]...)
	}
	if _, err := t.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a sequence still held (an incomplete rune at the end of the output)
// escaped.
func (t *termWriter) Flush() error {
	if len(t.pending) == 0 {
		return nil
	}
	out, _ := appendTermSafe(nil, t.pending, true, false)
	t.pending = nil
	_, err := t.w.Write(out)
	return err
}

// termSafe escapes, in place, every string that v (a pointer) holds: in structs,
// slices, arrays, maps and pointers, with termText. Call it on a document before
// printing its text form, never before printing JSON.
func termSafe(v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer {
		panic("termSafe needs a pointer")
	}
	termSafeValue(rv.Elem(), 0)
}

func termSafeValue(v reflect.Value, depth int) {
	if depth > 32 || !v.IsValid() {
		return
	}
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(termText(v.String()))
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() && v.Kind() == reflect.Pointer {
			termSafeValue(v.Elem(), depth+1)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				termSafeValue(v.Field(i), depth+1)
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // bytes (json.RawMessage) are printed by their own code
		}
		for i := 0; i < v.Len(); i++ {
			termSafeValue(v.Index(i), depth+1)
		}
	case reflect.Map:
		if v.IsNil() || !v.CanSet() {
			return
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			k := reflect.New(v.Type().Key()).Elem()
			k.Set(it.Key())
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(it.Value())
			termSafeValue(k, depth+1)
			termSafeValue(e, depth+1)
			out.SetMapIndex(k, e)
		}
		v.Set(out)
	}
}
