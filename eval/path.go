package eval

import (
	"fmt"
	"strconv"
	"strings"
)

// A path is a root name followed by keys: `data.customer.email` is root data and keys
// "customer", "email"; `data.items[0]` has keys "items", 0. The rewrite turns every
// name and member access of an expression into a path (see rewrite.go), resolved here
// with the package's strict rules:
//
//   - a missing field, a key of a non-object or an index out of range is an error
//     (ErrMissingField) naming the path;
//   - an optional step (`a?.b`) instead makes the whole path nil when a is null or has
//     no field b;
//   - lenient resolution (the left side of `??`) makes every such step nil;
//   - an unavailable TOAST value is an error whatever the mode.

// path resolves root r and keys. Bit i of opt marks key i as optional.
func (e *Env) path(r rootID, opt uint64, lenient bool, keys []any) (any, error) {
	if len(keys) == 0 {
		return e.rootValue(r)
	}
	var cur any
	switch {
	case r.isRow():
		name, ok := keys[0].(string)
		if !ok {
			return nil, fmt.Errorf("cannot index %s with %s", r, typeName(keys[0]))
		}
		if v, ok := e.rawLeaf(r, name, keys[1:]); ok {
			return v, nil
		}
		v, err := e.column(r, name, lenient || opt&1 != 0)
		if err != nil {
			return nil, err
		}
		cur = v
	case r == rootEvent:
		name, _ := keys[0].(string)
		v, ok := e.eventField(name)
		if !ok && (lenient || opt&1 != 0) {
			return nil, nil
		}
		if !ok {
			return nil, &fieldError{kind: ErrMissingField, msg: fmt.Sprintf("field %s not in event", keyText(keys[0]))}
		}
		cur = v
	default:
		v, err := e.rootValue(r)
		if err != nil {
			return nil, err
		}
		return e.walk(r, v, opt, lenient, keys, 0)
	}
	return e.walk(r, cur, opt, lenient, keys, 1)
}

// rawLeaf resolves a path into a column that is not decoded yet on the column's
// JSON, decoding only the value reached (see rawjson.go). It reports false when the
// decoded walk must answer.
func (e *Env) rawLeaf(r rootID, name string, keys []any) (any, bool) {
	if len(keys) == 0 {
		return nil, false
	}
	row, c, i := e.index(r, name)
	if i < 0 || c.vals != nil && c.vals[i].done {
		return nil, false
	}
	raw, ok := rawPath(row.Values[i], keys)
	if !ok {
		return nil, false
	}
	v, err := decodeJSON(raw)
	return v, err == nil
}

// walk applies keys[from:] to cur, the value after keys[:from].
func (e *Env) walk(r rootID, cur any, opt uint64, lenient bool, keys []any, from int) (any, error) {
	for i := from; i < len(keys); i++ {
		soft := lenient || i < 64 && opt&(1<<i) != 0
		v, found, err := member(cur, keys[i])
		switch {
		case err != nil:
			return nil, fmt.Errorf("%w (%s)", err, pathText(r.String(), keys[:i]))
		case found:
			cur = v
		case soft:
			return nil, nil
		default:
			return nil, missingAt(r, cur, keys, i)
		}
	}
	return cur, nil
}

// get resolves keys on a value that is not a root (`(new ?? old).status`, `.x` in a
// predicate), with the rules of path.
func get(base any, opt uint64, lenient bool, keys []any) (any, error) {
	cur := base
	for i, k := range keys {
		soft := lenient || i < 64 && opt&(1<<i) != 0
		v, found, err := member(cur, k)
		switch {
		case err != nil:
			return nil, err
		case found:
			cur = v
		case soft:
			return nil, nil
		default:
			return nil, missingAt(numRoots, cur, keys, i)
		}
	}
	return cur, nil
}

// member returns field or element key of v. found is false when v is nil, the
// object lacks the key or the index is out of range; err is set when v cannot have
// members of that kind.
func member(v, key any) (any, bool, error) {
	switch x := v.(type) {
	case nil:
		return nil, false, nil
	case map[string]any:
		k, ok := key.(string)
		if !ok {
			return nil, false, fmt.Errorf("cannot index object with %s", typeName(key))
		}
		r, ok := x[k]
		return r, ok, nil
	case []any:
		n := asNumber(key)
		if n.kind != intNum {
			return nil, false, fmt.Errorf("cannot index list with %s", typeName(key))
		}
		i := n.i
		if i < 0 {
			i += int64(len(x))
		}
		if i < 0 || i >= int64(len(x)) {
			return nil, false, nil
		}
		return x[i], true, nil
	}
	if s, ok := key.(string); ok {
		return nil, false, fmt.Errorf("cannot read field %q of %s", s, typeName(v))
	}
	return nil, false, fmt.Errorf("cannot index %s", typeName(v))
}

// missingAt explains why keys[i] is not in cur.
func missingAt(r rootID, cur any, keys []any, i int) error {
	where := "object"
	if r < numRoots {
		where = pathText(r.String(), keys[:i])
	}
	var msg string
	switch {
	case cur == nil:
		msg = fmt.Sprintf("cannot read %s of null (%s)", keyText(keys[i]), where)
	case asNumber(keys[i]).kind == intNum:
		msg = fmt.Sprintf("index %s out of range in %s", keyText(keys[i]), where)
	default:
		msg = fmt.Sprintf("field %s not in %s", keyText(keys[i]), where)
	}
	return &fieldError{kind: ErrMissingField, msg: msg}
}

func keyText(k any) string {
	if s, ok := k.(string); ok {
		return strconv.Quote(s)
	}
	if n := asNumber(k); n.kind != notNum {
		return string(n.appendText(nil))
	}
	return typeName(k)
}

// pathText writes a path for messages: data.customer.email, data.items[0].
func pathText(root string, keys []any) string {
	var b strings.Builder
	b.WriteString(root)
	for _, k := range keys {
		switch x := k.(type) {
		case string:
			if isIdent(x) {
				b.WriteByte('.')
				b.WriteString(x)
			} else {
				b.WriteString("[" + strconv.Quote(x) + "]")
			}
		default:
			b.WriteString("[" + keyText(x) + "]")
		}
	}
	return b.String()
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c != '_' && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
