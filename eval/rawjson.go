package eval

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// A path with constant keys into a jsonb column (`customer.address.city`) is
// resolved on the column's JSON text: only the value it reaches is decoded (or, in a
// template, copied as it is). When the walk does not succeed plainly — a missing key,
// an index out of range, malformed JSON, a key of another kind — the caller falls
// back to the decoded walk, which gives the error or the optional-chaining answer.
// Both walks agree on success for valid JSON (row values always are): an object's
// last duplicate key wins in both. An array is read only up to the element reached.

// rawPath walks keys through the JSON value raw.
func rawPath(raw []byte, keys []any) ([]byte, bool) {
	for _, k := range keys {
		var ok bool
		switch k := k.(type) {
		case string:
			raw, ok = rawField(raw, k)
		case int:
			raw, ok = rawIndex(raw, k)
		case int64:
			raw, ok = rawIndex(raw, int(k))
		}
		if !ok {
			return nil, false
		}
	}
	return raw, true
}

// rawField returns the value of key in the JSON object raw.
func rawField(raw []byte, key string) ([]byte, bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return nil, false
	}
	var found []byte
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return nil, false
	}
	for i < len(raw) {
		end, ok := skipValue(raw, i)
		if !ok || raw[i] != '"' {
			return nil, false
		}
		match := keyEquals(raw[i:end], key)
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return nil, false
		}
		i = skipSpace(raw, i+1)
		vend, ok := skipValue(raw, i)
		if !ok {
			return nil, false
		}
		if match {
			found = raw[i:vend]
		}
		i = skipSpace(raw, vend)
		switch {
		case i < len(raw) && raw[i] == ',':
			i = skipSpace(raw, i+1)
		case i < len(raw) && raw[i] == '}':
			return found, found != nil
		default:
			return nil, false
		}
	}
	return nil, false
}

// rawIndex returns element n (≥ 0) of the JSON array raw.
func rawIndex(raw []byte, n int) ([]byte, bool) {
	i := skipSpace(raw, 0)
	if n < 0 || i >= len(raw) || raw[i] != '[' {
		return nil, false
	}
	i = skipSpace(raw, i+1)
	for k := 0; i < len(raw) && raw[i] != ']'; k++ {
		end, ok := skipValue(raw, i)
		if !ok {
			return nil, false
		}
		if k == n {
			return raw[i:end], true
		}
		i = skipSpace(raw, end)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return nil, false
}

// keyEquals reports whether the JSON string tok spells key.
func keyEquals(tok []byte, key string) bool {
	body := tok[1 : len(tok)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return string(body) == key
	}
	var s string
	return json.Unmarshal(tok, &s) == nil && s == key
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value starting at i. It checks the
// structure loosely (strings, nesting); the reached value is checked when it is
// decoded or written.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(b) {
				return 0, false
			}
			i++
		case '{', '[':
			depth++
			i++
			continue
		case '}', ']':
			if depth == 0 {
				return 0, false
			}
			depth--
			i++
		default:
			if depth > 0 {
				i++
				continue
			}
			start := i
			for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' &&
				b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
				i++
			}
			if i == start {
				return 0, false
			}
		}
		if depth == 0 {
			return i, true
		}
	}
	return 0, false
}
