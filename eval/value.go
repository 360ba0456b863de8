package eval

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// Values seen by expressions. A JSON value of an event decodes to:
//
//	string             string
//	true, false        bool
//	null               nil
//	integer in int64   int64
//	any other number   Numeric (exact text)
//	array              []any
//	object             map[string]any
//
// Decoded values are cached in the Env and shared by every expression run on it:
// functions must not modify them.

// maxJSONDepth bounds the nesting of decoded JSON values.
const maxJSONDepth = 512

var errJSONDepth = errors.New("JSON nested too deeply")

// decodeJSON decodes one JSON value.
func decodeJSON(raw []byte) (any, error) {
	r := jsonReader{b: raw}
	r.space()
	v, err := r.value(0)
	if err != nil {
		return nil, err
	}
	r.space()
	if r.i != len(r.b) {
		return nil, r.fail("trailing data")
	}
	return v, nil
}

type jsonReader struct {
	b []byte
	i int
}

func (r *jsonReader) fail(what string) error {
	return fmt.Errorf("invalid JSON at offset %d: %s", r.i, what)
}

func (r *jsonReader) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *jsonReader) value(depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errJSONDepth
	}
	if r.i >= len(r.b) {
		return nil, r.fail("unexpected end")
	}
	switch c := r.b[r.i]; c {
	case '"':
		return r.str()
	case '{':
		return r.object(depth)
	case '[':
		return r.array(depth)
	case 't':
		return r.literal("true", true)
	case 'f':
		return r.literal("false", false)
	case 'n':
		return r.literal("null", nil)
	}
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		if !isDigit(c) && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			break
		}
		r.i++
	}
	tok := r.b[start:r.i]
	if !validNumber(tok) {
		r.i = start
		return nil, r.fail("invalid value")
	}
	return numberValue(tok), nil
}

// numberValue returns an int64 for an integer within range, else a Numeric.
func numberValue(tok []byte) any {
	neg := tok[0] == '-'
	digits := tok
	if neg {
		digits = tok[1:]
	}
	var u uint64
	for _, c := range digits {
		if !isDigit(c) || u > (math.MaxInt64+1)/10 {
			return Numeric{text: string(tok)}
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u == math.MaxInt64+1:
		return int64(math.MinInt64)
	case u <= math.MaxInt64:
		if neg {
			return -int64(u)
		}
		return int64(u)
	}
	return Numeric{text: string(tok)}
}

func (r *jsonReader) literal(word string, v any) (any, error) {
	if len(r.b)-r.i < len(word) || string(r.b[r.i:r.i+len(word)]) != word {
		return nil, r.fail("invalid literal")
	}
	r.i += len(word)
	return v, nil
}

// str reads a string; escapes are decoded by encoding/json.
func (r *jsonReader) str() (string, error) {
	start := r.i
	r.i++
	plain := true
	for r.i < len(r.b) {
		switch c := r.b[r.i]; {
		case c == '"':
			r.i++
			if plain && utf8.Valid(r.b[start+1:r.i-1]) {
				return string(r.b[start+1 : r.i-1]), nil
			}
			var s string
			if err := json.Unmarshal(r.b[start:r.i], &s); err != nil {
				return "", fmt.Errorf("invalid JSON string: %w", err)
			}
			return s, nil
		case c == '\\':
			plain = false
			r.i += 2
		case c < 0x20:
			return "", r.fail("control character in string")
		default:
			r.i++
		}
	}
	return "", r.fail("unterminated string")
}

func (r *jsonReader) object(depth int) (any, error) {
	r.i++
	m := make(map[string]any)
	r.space()
	if r.i < len(r.b) && r.b[r.i] == '}' {
		r.i++
		return m, nil
	}
	for {
		r.space()
		if r.i >= len(r.b) || r.b[r.i] != '"' {
			return nil, r.fail("expected object key")
		}
		k, err := r.str()
		if err != nil {
			return nil, err
		}
		r.space()
		if r.i >= len(r.b) || r.b[r.i] != ':' {
			return nil, r.fail("expected ':'")
		}
		r.i++
		r.space()
		v, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[k] = v
		r.space()
		if r.i < len(r.b) && r.b[r.i] == ',' {
			r.i++
			continue
		}
		if r.i < len(r.b) && r.b[r.i] == '}' {
			r.i++
			return m, nil
		}
		return nil, r.fail("expected ',' or '}'")
	}
}

func (r *jsonReader) array(depth int) (any, error) {
	r.i++
	a := []any{}
	r.space()
	if r.i < len(r.b) && r.b[r.i] == ']' {
		r.i++
		return a, nil
	}
	for {
		r.space()
		v, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		r.space()
		if r.i < len(r.b) && r.b[r.i] == ',' {
			r.i++
			continue
		}
		if r.i < len(r.b) && r.b[r.i] == ']' {
			r.i++
			return a, nil
		}
		return nil, r.fail("expected ',' or ']'")
	}
}

// timeLayout is the layout of commit_time in the event JSON.
const timeLayout = "2006-01-02T15:04:05.999999Z07:00"

// appendFloat appends f the way encoding/json writes float64 (shortest, exponent
// only for very large or small magnitudes).
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendText appends v as plain text: strings as they are, null as nothing,
// numbers as their exact text, lists and objects as compact JSON.
func appendText(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return b, nil
	case string:
		return append(b, x...), nil
	case time.Time:
		return x.UTC().AppendFormat(b, timeLayout), nil
	case time.Duration:
		return append(b, x.String()...), nil
	case float64:
		if !finite(x) {
			return strconv.AppendFloat(b, x, 'g', -1, 64), nil
		}
	}
	return appendJSON(b, v)
}

// appendJSONInner appends v for a JSON body: a string (or time) JSON-escaped without
// its quotes, anything else as a JSON token.
func appendJSONInner(b []byte, v any) ([]byte, error) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case time.Time:
		return x.UTC().AppendFormat(b, timeLayout), nil // no character needs escaping
	case time.Duration:
		s = x.String()
	default:
		return appendJSON(b, v)
	}
	start := len(b)
	b = decoder.AppendJSONString(b, s)
	copy(b[start:], b[start+1:len(b)-1])
	return b[:len(b)-2], nil
}

// appendJSON appends v as compact JSON. Object keys are sorted, as encoding/json does.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case string:
		return decoder.AppendJSONString(b, x), nil
	case Numeric:
		return append(b, x.String()...), nil
	case float64:
		if !finite(x) {
			return b, fmt.Errorf("cannot write %v as JSON", x)
		}
		return appendFloat(b, x), nil
	case time.Time:
		b = append(b, '"')
		b = x.UTC().AppendFormat(b, timeLayout)
		return append(b, '"'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = decoder.AppendJSONString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendJSON(b, x[k]); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	}
	if n := asNumber(v); n.kind != notNum {
		if n.kind == floatNum {
			return appendJSON(b, n.f)
		}
		return n.appendText(b), nil
	}
	j, err := json.Marshal(v)
	if err != nil {
		return b, fmt.Errorf("write %T as JSON: %w", v, err)
	}
	return append(b, j...), nil
}

// typeName names v's kind in error messages (never its value: row values stay out
// of errors and logs).
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "bool"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	case time.Time:
		return "time"
	case time.Duration:
		return "duration"
	}
	if asNumber(v).kind != notNum {
		return "number"
	}
	return fmt.Sprintf("%T", v)
}
