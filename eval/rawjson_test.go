package eval

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// decodedPath is the reference: decode everything, then walk.
func decodedPath(raw []byte, keys []any) (any, bool) {
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, false
	}
	for _, k := range keys {
		var found bool
		if v, found, err = member(v, k); err != nil || !found {
			return nil, false
		}
	}
	return v, true
}

func TestRawPath(t *testing.T) {
	doc := []byte(` { "a" : {"b": [10, {"c": "x"}, [1, 2]], "s": "q\"}]"},
	  "dup": 1, "d\u0075p2": 5, "dup": {"z": true}, "e": [], "n": null, "esc\"key": 7 } `)
	f := func(want any, keys ...any) {
		t.Helper()
		raw, ok := rawPath(doc, keys)
		ref, refOK := decodedPath(doc, keys)
		if ok != refOK {
			t.Fatalf("%v: raw and decoded walks disagree; raw %v, decoded %v", keys, ok, refOK)
		}
		if !ok {
			if want != nil {
				t.Fatalf("%v: unexpected failure; want %v", keys, want)
			}
			return
		}
		got, err := decodeJSON(raw)
		if err != nil || !reflect.DeepEqual(got, ref) || !reflect.DeepEqual(got, want) {
			t.Fatalf("%v: unexpected value; raw walk %#v (%v), decoded walk %#v, want %#v", keys, got, err, ref, want)
		}
	}
	f(int64(10), "a", "b", 0)
	f("x", "a", "b", 1, "c")
	f(int64(2), "a", "b", 2, int64(1))
	f(`q"}]`, "a", "s")
	f(map[string]any{"z": true}, "dup") // the last duplicate wins
	f(int64(5), "dup2")                 // escaped key
	f(int64(7), `esc"key`)
	f(nil, "n")
	f([]any{}, "e")
	f(nil, "missing")
	f(nil, "a", "b", 3)
	f(nil, "e", 0)
	f(nil, "a", "b", "0")
	f(nil, "a", 0)
	f(nil, "n", "x")
	f(nil, "a", "s", "x")

	for _, bad := range []string{``, `{`, `{"a"`, `{"a":`, `{"a": 1`, `{"a" 1}`, `{"a": "unterminated}`, `]`, `{"a": }`} {
		if _, ok := rawPath([]byte(bad), []any{"a"}); ok {
			t.Fatalf("unexpected success on %q", bad)
		}
	}
	// Arrays are read up to the element reached; row values are valid JSON, and
	// FuzzRawPath checks agreement on valid documents.
	for _, bad := range []string{``, `[`, `]`, `["open`, `{"a": [1]}`} {
		if _, ok := rawPath([]byte(bad), []any{0}); ok {
			t.Fatalf("unexpected success on %q", bad)
		}
	}
}

func TestCompact(t *testing.T) {
	in := "x{ \"a b\" :\t\"c \\\" d\\\\\" ,\n \"e\":[ 1 , 2 ] }"
	want := `x{"a b":"c \" d\\","e":[1,2]}`
	if got := string(compact([]byte(in), 1)); got != want {
		t.Fatalf("unexpected compaction of %s;\ngot  %s\nwant %s", in, got, want)
	}
}

// FuzzRawPath checks that the raw walk never panics and agrees with decoding then
// walking whenever it succeeds on a well-formed document.
func FuzzRawPath(f *testing.F) {
	f.Add([]byte(`{"a": {"b": [1, {"c": "x"}]}, "a": 2}`), "a", "b", 1)
	f.Add([]byte(`[{"a\n": 1}, "s\\\"", null]`), "a\n", "", 0)
	f.Add([]byte(`{"k": [[[]]], "k2": {"": 1}}`), "k2", "", 0)
	f.Fuzz(func(t *testing.T, doc []byte, k1, k2 string, i int) {
		for _, keys := range [][]any{{k1}, {k1, k2}, {i}, {k1, i}, {i, k2}, {k1, k2, i}} {
			raw, ok := rawPath(doc, keys)
			if !ok || !json.Valid(doc) {
				continue
			}
			ref, refOK := decodedPath(doc, keys)
			got, err := decodeJSON(raw)
			if !refOK || err != nil || !reflect.DeepEqual(got, ref) {
				t.Fatalf("%q %v: raw walk %#v (%v); decoded walk %#v (%v)", doc, keys, got, err, ref, refOK)
			}
		}
	})
}

// FuzzDecodeJSON checks decodeJSON against encoding/json.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a": [1, 2.5, "x\u00e9", null, true]}`, `-0.0e+1`, `"\ud83d\ude00"`, `[[{}]]`, `{"a":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		v, err := decodeJSON(doc)
		if valid := json.Valid(doc); (err == nil) != valid && !errors.Is(err, errJSONDepth) {
			t.Fatalf("%q: decodeJSON error %v; json.Valid %v", doc, err, valid)
		}
		if err != nil {
			return
		}
		if c, err := decodeJSON(compact(bytes.Clone(doc), 0)); err != nil || !equal(c, v) {
			t.Fatalf("%q: compaction changed the document: %#v, %v", doc, c, err)
		}
		var ref any
		d := json.NewDecoder(bytes.NewReader(doc))
		d.UseNumber()
		if err := d.Decode(&ref); err != nil {
			t.Fatalf("%q: encoding/json rejects what decodeJSON accepts: %v", doc, err)
		}
		if !sameJSON(v, ref) {
			t.Fatalf("%q: got %#v; encoding/json %#v", doc, v, ref)
		}
	})
}

// sameJSON compares our decoding with encoding/json's (numbers as json.Number).
func sameJSON(ours, ref any) bool {
	switch x := ours.(type) {
	case int64, Numeric:
		n, ok := ref.(json.Number)
		return ok && equal(x, Numeric{text: string(n)})
	case []any:
		y, ok := ref.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameJSON(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := ref.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !sameJSON(v, w) {
				return false
			}
		}
		return true
	}
	return ours == ref
}
