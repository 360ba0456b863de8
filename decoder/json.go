package decoder

import (
	"encoding/base64"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string literal. Unlike encoding/json it does not
// escape <, > and &, so payloads stay byte-identical to the source text. Invalid UTF-8
// is replaced by U+FFFD; callers that must not alter bytes check utf8.Valid first.
func AppendJSONString(b []byte, s string) []byte {
	b, _ = appendQuoted(b, s, true)
	return b
}

func appendBase64(b []byte, src []byte) []byte {
	return base64.StdEncoding.AppendEncode(b, src)
}

// appendJSONText appends s as a JSON string literal like AppendJSONString, but reports
// false (with b unusable) instead of replacing invalid UTF-8.
func appendJSONText(b []byte, s []byte) ([]byte, bool) {
	return appendQuoted(b, s, false)
}

// appendQuoted appends s as a JSON string literal, escaping what JSON requires plus
// the runes escapedRune names. A byte that is not valid UTF-8 is written as \ufffd when replace
// is set; otherwise appendQuoted stops there and reports false, with b unusable.
func appendQuoted[T string | []byte](b []byte, s T, replace bool) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		// A rune is at most utf8.UTFMax bytes: for a []byte the conversion copies no
		// more, and for a string it copies nothing.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			if !replace {
				return b, false
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if escapedRune(r) {
			b = append(b, s[start:i]...)
			b = appendRuneEscape(b, r)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}

// escapedRune reports whether r is written as a \u escape although JSON allows it
// raw: U+2028 and U+2029, which break JavaScript string literals, and the C1
// control characters U+0080–U+009F, among them U+0085 (NEL), which line-oriented
// readers (Python's splitlines, some log shippers) take for a line break and
// terminals for a control sequence.
func escapedRune(r rune) bool {
	return r >= 0x80 && r <= 0x9f || r == '\u2028' || r == '\u2029'
}

// appendRuneEscape appends r, which must be below U+10000, as a JSON \u escape with
// four hex digits.
func appendRuneEscape(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

// isJSONNumber reports whether s is a number in JSON's grammar (RFC 8259 §6).
func isJSONNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i >= len(s):
		return false
	case s[i] == '0':
		i++
	case s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == j {
			return false
		}
	}
	return i == len(s)
}

// appendCompactJSON appends valid JSON text src without the whitespace outside strings,
// so that every event stays on one line, escaping in strings the runes escapedRune
// names. Everything else (key order, duplicate keys, number spelling, escapes) is
// kept byte for byte.
func appendCompactJSON(b, src []byte) []byte {
	inString := false
	start := 0
	for i := 0; i < len(src); i++ {
		c := src[i]
		if inString {
			switch {
			case c == '\\':
				i++
			case c == '"':
				inString = false
			case c >= utf8.RuneSelf:
				r, size := utf8.DecodeRune(src[i:])
				if escapedRune(r) {
					b = append(b, src[start:i]...)
					b = appendRuneEscape(b, r)
					start = i + size
				}
				i += size - 1
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ' ', '\t', '\n', '\r':
			b = append(b, src[start:i]...)
			start = i + 1
		}
	}
	return append(b, src[start:]...)
}
