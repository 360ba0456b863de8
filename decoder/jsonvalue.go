package decoder

import (
	"encoding/json"
	"unicode/utf8"
)

// maxJSONDepth bounds the recursion of appendJSON; deeper documents are checked by
// encoding/json instead.
const maxJSONDepth = 1000

// appendJSON appends the JSON document src (a json or jsonb value) to dst without the
// whitespace outside strings, checking its syntax (RFC 8259) in the same pass. It
// reports false when src is not JSON. UTF-8 validity is checked by the caller.
func appendJSON(dst, src []byte) ([]byte, bool) {
	p := jsonParser{src: src, out: dst}
	p.space()
	if !p.value(0) {
		if p.tooDeep && json.Valid(src) {
			return appendCompactJSON(dst, src), true
		}
		return dst, false
	}
	p.space()
	if p.i != len(src) {
		return dst, false
	}
	return p.out, true
}

type jsonParser struct {
	src     []byte
	i       int
	out     []byte
	tooDeep bool
}

func (p *jsonParser) space() {
	for p.i < len(p.src) {
		switch p.src[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) bool {
	if p.i >= len(p.src) {
		return false
	}
	switch c := p.src[p.i]; c {
	case '{', '[':
		if depth >= maxJSONDepth {
			p.tooDeep = true
			return false
		}
		return p.container(c, depth+1)
	case '"':
		return p.string()
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	}
	return p.number()
}

// container parses an object ('{') or an array ('[').
func (p *jsonParser) container(open byte, depth int) bool {
	close := byte(']')
	if open == '{' {
		close = '}'
	}
	p.out = append(p.out, open)
	p.i++
	p.space()
	if p.i < len(p.src) && p.src[p.i] == close {
		p.i++
		p.out = append(p.out, close)
		return true
	}
	for {
		if open == '{' {
			if p.i >= len(p.src) || p.src[p.i] != '"' || !p.string() {
				return false
			}
			p.space()
			if p.i >= len(p.src) || p.src[p.i] != ':' {
				return false
			}
			p.i++
			p.out = append(p.out, ':')
			p.space()
		}
		if !p.value(depth) {
			return false
		}
		p.space()
		if p.i >= len(p.src) {
			return false
		}
		switch p.src[p.i] {
		case ',':
			p.i++
			p.out = append(p.out, ',')
			p.space()
		case close:
			p.i++
			p.out = append(p.out, close)
			return true
		default:
			return false
		}
	}
}

// string copies a string literal, checking its escapes; runes that escapedRune
// names are written escaped, as in text values.
func (p *jsonParser) string() bool {
	start := p.i
	p.i++ // opening quote
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == '"':
			p.i++
			p.out = append(p.out, p.src[start:p.i]...)
			return true
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(p.src[p.i:])
			if escapedRune(r) {
				p.out = append(p.out, p.src[start:p.i]...)
				p.out = appendRuneEscape(p.out, r)
				start = p.i + size
			}
			p.i += size
		case c == '\\':
			if p.i+1 >= len(p.src) {
				return false
			}
			switch p.src[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if p.i+6 > len(p.src) {
					return false
				}
				for _, h := range p.src[p.i+2 : p.i+6] {
					if _, ok := unhex(h); !ok {
						return false
					}
				}
				p.i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			p.i++
		}
	}
	return false
}

func (p *jsonParser) literal(word string) bool {
	if len(p.src)-p.i < len(word) || string(p.src[p.i:p.i+len(word)]) != word {
		return false
	}
	p.i += len(word)
	p.out = append(p.out, word...)
	return true
}

func (p *jsonParser) number() bool {
	start := p.i
	for p.i < len(p.src) {
		switch c := p.src[p.i]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			p.i++
			continue
		}
		break
	}
	if !isJSONNumber(p.src[start:p.i]) {
		return false
	}
	p.out = append(p.out, p.src[start:p.i]...)
	return true
}
