package decoder

import (
	"encoding/base64"
	"unicode/utf8"
)

// valueDecoder turns column values into JSON. It holds scratch buffers reused from value
// to value; appended JSON never aliases them or the input.
type valueDecoder struct {
	elem []byte // an array element, unescaped
	bin  []byte // the bytes of a bytea value
}

// appendValue appends the JSON form of one tuple column of type t to dst. The only
// errors are ErrInvalidUTF8 and ErrBinaryUnsupported; on error dst is returned unchanged
// in length.
func (v *valueDecoder) appendValue(dst []byte, t *typeInfo, col TupleColumn) ([]byte, error) {
	switch col.Kind {
	case TupleText:
		if t.kind == kindArray {
			return v.appendArray(dst, t.elem, col.Data)
		}
		return v.appendScalar(dst, t.kind, col.Data)
	case TupleBinary:
		return v.appendBinary(dst, t, col.Data)
	}
	return append(dst, "null"...), nil
}

// appendScalar appends the JSON form of the text s of a value of kind k. Text that does
// not have the form PostgreSQL's output function gives the kind (NaN, infinity, a BC
// date, a DateStyle other than ISO) is passed unchanged as a JSON string.
func (v *valueDecoder) appendScalar(dst []byte, k valueKind, s []byte) ([]byte, error) {
	switch k {
	case kindNumber:
		if isJSONNumber(s) {
			return append(dst, s...), nil
		}
	case kindBool:
		if len(s) == 1 && s[0] == 't' {
			return append(dst, "true"...), nil
		}
		if len(s) == 1 && s[0] == 'f' {
			return append(dst, "false"...), nil
		}
	case kindJSON:
		if !utf8.Valid(s) {
			return dst, ErrInvalidUTF8
		}
		if out, ok := appendJSON(dst, s); ok {
			return out, nil
		}
	case kindBytea:
		if b, ok := v.decodeBytea(s); ok {
			dst = append(dst, '"')
			dst = base64.StdEncoding.AppendEncode(dst, b)
			return append(dst, '"'), nil
		}
	case kindTimestamp:
		if out, ok := appendTimestamp(dst, s, false); ok {
			return out, nil
		}
	case kindTimestampTZ:
		if out, ok := appendTimestamp(dst, s, true); ok {
			return out, nil
		}
	case kindTimeTZ:
		if out, ok := appendTimeTZ(dst, s); ok {
			return out, nil
		}
	}
	return appendString(dst, s)
}

// appendString appends s as a JSON string, refusing invalid UTF-8.
func appendString(dst, s []byte) ([]byte, error) {
	out, ok := appendJSONText(dst, s)
	if !ok {
		return dst, ErrInvalidUTF8
	}
	return out, nil
}

// decodeBytea decodes the text form of a bytea value, hex ("\x0102") or escape
// (bytea_output = escape), into v.bin.
func (v *valueDecoder) decodeBytea(s []byte) ([]byte, bool) {
	b := v.bin[:0]
	defer func() { v.bin = keep(b) }()
	if len(s) >= 2 && s[0] == '\\' && s[1] == 'x' {
		hex := s[2:]
		if len(hex)%2 != 0 {
			return nil, false
		}
		for i := 0; i < len(hex); i += 2 {
			hi, ok1 := unhex(hex[i])
			lo, ok2 := unhex(hex[i+1])
			if !ok1 || !ok2 {
				return nil, false
			}
			b = append(b, hi<<4|lo)
		}
		return b, true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			b = append(b, '\\')
			i++
		case i+3 < len(s) && isOctal(s[i+1]) && s[i+1] <= '3' && isOctal(s[i+2]) && isOctal(s[i+3]):
			b = append(b, (s[i+1]-'0')<<6|(s[i+2]-'0')<<3|(s[i+3]-'0'))
			i += 3
		default:
			return nil, false
		}
	}
	return b, true
}

// keep returns b emptied for reuse, or nil when it grew too large to hold on to.
func keep(b []byte) []byte {
	if cap(b) > bigScratch {
		return nil
	}
	return b[:0]
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// minJSONSize is a lower bound of the JSON size of a value whose text is n bytes long,
// used to refuse an oversized change before decoding it.
func minJSONSize(k valueKind, n int) int {
	switch k {
	case kindString:
		return n + 2
	case kindNumber:
		return n
	case kindBytea:
		return n / 3 // escape format: 4 text bytes per byte, 4/3 base64 bytes per byte
	case kindJSON:
		return 0 // whitespace may be removed
	}
	return n / 2
}
