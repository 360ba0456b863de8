package decoder

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
)

// appendBinary appends the JSON form of a value sent in binary format (pgoutput option
// binary=true). It decodes the types whose binary form is simple and gives the same JSON
// as their text form: bool, int2, int4, int8, oid, float4, float8, text, varchar, bpchar,
// name, bytea, json, jsonb and uuid. Every other type (numeric, date/time types, arrays,
// enums, unknown types) gives ErrBinaryUnsupported: stream in text format.
func (v *valueDecoder) appendBinary(dst []byte, t *typeInfo, b []byte) ([]byte, error) {
	switch t.oid {
	case 16: // bool
		if len(b) == 1 && b[0] <= 1 {
			return strconv.AppendBool(dst, b[0] == 1), nil
		}
	case 21: // int2
		if len(b) == 2 {
			return strconv.AppendInt(dst, int64(int16(binary.BigEndian.Uint16(b))), 10), nil
		}
	case 23: // int4
		if len(b) == 4 {
			return strconv.AppendInt(dst, int64(int32(binary.BigEndian.Uint32(b))), 10), nil
		}
	case 20: // int8
		if len(b) == 8 {
			return strconv.AppendInt(dst, int64(binary.BigEndian.Uint64(b)), 10), nil
		}
	case 26: // oid
		if len(b) == 4 {
			return strconv.AppendUint(dst, uint64(binary.BigEndian.Uint32(b)), 10), nil
		}
	case 700: // float4
		if len(b) == 4 {
			return appendFloat(dst, float64(math.Float32frombits(binary.BigEndian.Uint32(b))), 32), nil
		}
	case 701: // float8
		if len(b) == 8 {
			return appendFloat(dst, math.Float64frombits(binary.BigEndian.Uint64(b)), 64), nil
		}
	case 25, 1043, 1042, 19: // text, varchar, bpchar, name: the binary form is the text
		return appendString(dst, b)
	case 17: // bytea: the binary form is the bytes
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, b)
		return append(dst, '"'), nil
	case 114: // json: the binary form is the text
		return v.appendScalar(dst, kindJSON, b)
	case 3802: // jsonb: a version byte (1) and the text
		if len(b) >= 1 && b[0] == 1 {
			return v.appendScalar(dst, kindJSON, b[1:])
		}
	case 2950: // uuid
		if len(b) == 16 {
			return appendUUID(dst, b), nil
		}
	}
	// Another type, or a value of the wrong length for its type.
	return dst, ErrBinaryUnsupported
}

// appendFloat formats f as PostgreSQL's float4out/float8out do with the default
// extra_float_digits (shortest exact form): fixed notation for decimal exponents from -4
// to 14 (float8) or 5 (float4), else d.ddde±XX; NaN and infinities as JSON strings.
func appendFloat(dst []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], f, 'e', -1, bits) // -d.ddde±XX
	mant, exp := e, 0
	for i, c := range e {
		if c == 'e' {
			mant = e[:i]
			exp, _ = strconv.Atoi(string(e[i+1:]))
			break
		}
	}
	maxExp := 15
	if bits == 32 {
		maxExp = 6
	}
	if exp < -4 || exp >= maxExp {
		return append(dst, e...)
	}
	if mant[0] == '-' {
		dst = append(dst, '-')
		mant = mant[1:]
	}
	var digits [24]byte
	nd := copy(digits[:], mant[:1])
	if len(mant) > 2 {
		nd += copy(digits[nd:], mant[2:])
	}
	if exp < 0 {
		dst = append(dst, "0."...)
		for i := -1; i > exp; i-- {
			dst = append(dst, '0')
		}
		return append(dst, digits[:nd]...)
	}
	if nd <= exp+1 {
		dst = append(dst, digits[:nd]...)
		for i := nd; i <= exp; i++ {
			dst = append(dst, '0')
		}
		return dst
	}
	dst = append(dst, digits[:exp+1]...)
	dst = append(dst, '.')
	return append(dst, digits[exp+1:nd]...)
}

func appendUUID(dst, b []byte) []byte {
	dst = append(dst, '"')
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xF])
	}
	return append(dst, '"')
}
