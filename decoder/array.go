package decoder

// maxArrayDepth is PostgreSQL's MAXDIM: arrays have at most 6 dimensions.
const maxArrayDepth = 6

// appendArray appends the JSON form of the text of an array value: nested JSON arrays,
// one level per dimension, elements decoded by elem, NULL elements as null, "{}" as [].
//
// An array whose lower bounds are not all 1 is printed by PostgreSQL with explicit
// bounds ("[0:1]={1,2}"). JSON arrays cannot carry them and dropping them would change
// the value (PostgreSQL compares bounds), so such an array, like any text this parser
// does not accept, is passed unchanged as a JSON string.
func (v *valueDecoder) appendArray(dst []byte, elem valueKind, s []byte) ([]byte, error) {
	p := arrayParser{v: v, s: s, elem: elem}
	out, ok, err := p.array(dst, 0)
	if err != nil {
		return dst, err
	}
	if ok {
		p.space()
		if p.i == len(s) {
			return out, nil
		}
	}
	return appendString(dst, s)
}

type arrayParser struct {
	v    *valueDecoder
	s    []byte
	i    int
	elem valueKind
}

func (p *arrayParser) space() {
	for p.i < len(p.s) && isArraySpace(p.s[p.i]) {
		p.i++
	}
}

// array parses "{...}" at p.i. It reports false for text that is not an array literal.
func (p *arrayParser) array(dst []byte, depth int) ([]byte, bool, error) {
	if depth >= maxArrayDepth || p.i >= len(p.s) || p.s[p.i] != '{' {
		return dst, false, nil
	}
	p.i++
	dst = append(dst, '[')
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return append(dst, ']'), true, nil
	}
	for {
		p.space()
		if p.i >= len(p.s) {
			return dst, false, nil
		}
		var ok bool
		var err error
		if p.s[p.i] == '{' {
			dst, ok, err = p.array(dst, depth+1)
		} else {
			dst, ok, err = p.element(dst)
		}
		if !ok || err != nil {
			return dst, false, err
		}
		p.space()
		if p.i >= len(p.s) {
			return dst, false, nil
		}
		switch p.s[p.i] {
		case ',':
			p.i++
			dst = append(dst, ',')
		case '}':
			p.i++
			return append(dst, ']'), true, nil
		default:
			return dst, false, nil
		}
	}
}

// element parses one quoted or unquoted element at p.i and appends its JSON.
func (p *arrayParser) element(dst []byte) ([]byte, bool, error) {
	buf := p.v.elem[:0]
	defer func() { p.v.elem = keep(buf) }()
	if p.s[p.i] == '"' {
		p.i++
		for {
			if p.i >= len(p.s) {
				return dst, false, nil
			}
			c := p.s[p.i]
			p.i++
			if c == '"' {
				break
			}
			if c == '\\' {
				if p.i >= len(p.s) {
					return dst, false, nil
				}
				c = p.s[p.i]
				p.i++
			}
			buf = append(buf, c)
		}
		out, err := p.v.appendScalar(dst, p.elem, buf)
		return out, err == nil, err
	}
	escaped := false
	keep := 0 // length of buf up to its last escaped or non-space byte
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == ',' || c == '}' {
			break
		}
		if c == '{' || c == '"' {
			return dst, false, nil
		}
		p.i++
		if c == '\\' {
			if p.i >= len(p.s) {
				return dst, false, nil
			}
			buf = append(buf, p.s[p.i])
			p.i++
			escaped = true
			keep = len(buf)
			continue
		}
		buf = append(buf, c)
		if !isArraySpace(c) {
			keep = len(buf)
		}
	}
	buf = buf[:keep]
	if len(buf) == 0 {
		return dst, false, nil
	}
	if !escaped && len(buf) == 4 && (buf[0]|0x20) == 'n' && (buf[1]|0x20) == 'u' && (buf[2]|0x20) == 'l' && (buf[3]|0x20) == 'l' {
		return append(dst, "null"...), true, nil
	}
	out, err := p.v.appendScalar(dst, p.elem, buf)
	return out, err == nil, err
}

// isArraySpace reports the bytes array_in treats as white space.
func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
