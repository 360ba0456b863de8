package eval

import (
	"math"
	"reflect"
	"testing"
)

func TestCompareNumbers(t *testing.T) {
	n := func(s string) Numeric { return Numeric{text: s} }
	f := func(a, b any, want int) {
		t.Helper()
		got, ok := compareNumbers(asNumber(a), asNumber(b))
		if !ok || got != want {
			t.Fatalf("unexpected comparison of %v and %v; got %d (ok %v); want %d", a, b, got, ok, want)
		}
		back, _ := compareNumbers(asNumber(b), asNumber(a))
		if back != -want {
			t.Fatalf("comparison of %v and %v is not antisymmetric; got %d; want %d", b, a, back, -want)
		}
		if eq := equal(a, b); eq != (want == 0) {
			t.Fatalf("unexpected equality of %v and %v; got %v", a, b, eq)
		}
	}
	f(int64(100), n("100.00"), 0)
	f(n("1e2"), 100, 0)
	f(n("1.00E+2"), 100.0, 0)
	f(n("0.1"), 0.1, 0)
	f(n("0.10"), n("0.1000"), 0)
	f(n("0.10000000000000001"), 0.1, 1) // more digits than float64: still a different decimal
	f(n("123456789012345678901234567890"), n("123456789012345678901234567891"), -1)
	f(n("123456789012345678901234567890"), n("1.2345678901234567890123456789e29"), 0)
	f(n("123456789012345678901234567890"), 1.2345678901234568e29, -1)
	f(n("-0.0"), 0, 0)
	f(n("-0"), n("0e10"), 0)
	f(n("-1.5"), n("-1.4"), -1)
	f(n("-1.5"), 1, -1)
	f(n("0.001"), n("0.01"), -1)
	f(n("99"), n("100"), -1)
	f(n("1e400"), math.MaxFloat64, 1)
	f(n("1e-400"), 0, 1)
	f(n("-1e-400"), 0, -1)
	f(n("1e999999999999999999999"), n("1e999999999999"), 1) // huge exponents saturate, never overflow
	f(n("-1e-999999999999999999999"), n("-1e-999999999999"), 1)
	f(math.Inf(1), n("1e400"), 1)
	f(math.Inf(-1), n("-1e400"), -1)
	f(int64(math.MinInt64), n("-9223372036854775809"), 1)
	f(uint64(math.MaxUint64), int64(math.MaxInt64), 1)
	f(float32(0.1), n("0.1"), 0)
	f(int64(3), 3.0, 0)
	f(int64(3), 3.5, -1)
	f(int8(-3), uint16(2), -1)
	f(2.5, 2.25, 1)

	if _, ok := compareNumbers(asNumber(math.NaN()), asNumber(1)); ok {
		t.Fatal("NaN must not compare")
	}
	if equal(math.NaN(), math.NaN()) {
		t.Fatal("NaN must not equal itself")
	}
}

func TestNumberValue(t *testing.T) {
	f := func(text string, want any) {
		t.Helper()
		if got := numberValue([]byte(text)); !reflect.DeepEqual(got, want) {
			t.Fatalf("unexpected value of %s; got %#v; want %#v", text, got, want)
		}
	}
	f("0", int64(0))
	f("-0", int64(0))
	f("42", int64(42))
	f("9223372036854775807", int64(math.MaxInt64))
	f("-9223372036854775808", int64(math.MinInt64))
	f("9223372036854775808", Numeric{text: "9223372036854775808"})
	f("-9223372036854775809", Numeric{text: "-9223372036854775809"})
	f("99999999999999999999999", Numeric{text: "99999999999999999999999"})
	f("1.5", Numeric{text: "1.5"})
	f("100.00", Numeric{text: "100.00"})
	f("1e3", Numeric{text: "1e3"})
}

func TestParseNumeric(t *testing.T) {
	for _, s := range []string{"0", "-1.5", "1e-3", "1E+30", "123456789012345678901234567890.5"} {
		n, err := ParseNumeric(s)
		if err != nil || n.String() != s {
			t.Fatalf("unexpected result for %q; got %v, %v", s, n, err)
		}
	}
	for _, s := range []string{"", "-", "01", "1.", ".5", "1e", "+1", "1_000", "0x10", "NaN", "Infinity", "1 "} {
		if _, err := ParseNumeric(s); err == nil {
			t.Fatalf("unexpected success for %q", s)
		}
	}
	if got := (Numeric{}).String(); got != "0" {
		t.Fatalf("unexpected zero Numeric; got %q; want 0", got)
	}
	n, _ := ParseNumeric("12.50")
	if f := n.Float64(); f != 12.5 {
		t.Fatalf("unexpected Float64; got %v", f)
	}
	if b, _ := n.MarshalJSON(); string(b) != "12.50" {
		t.Fatalf("unexpected JSON; got %s", b)
	}
}

func TestToFloat(t *testing.T) {
	n := Numeric{text: "2.50"}
	if got := toFloat(n); got != 2.5 {
		t.Fatalf("unexpected conversion; got %#v", got)
	}
	in := []any{int64(1), n, "x"}
	got := toFloat(in).([]any)
	if got[1] != 2.5 || in[1] != n || got[0] != int64(1) || got[2] != "x" {
		t.Fatalf("unexpected list conversion; got %#v (input %#v)", got, in)
	}
	plain := []any{int64(1)}
	if out := toFloat(plain).([]any); &out[0] != &plain[0] {
		t.Fatal("a list without Numeric must not be copied")
	}
}

func TestDecodeJSON(t *testing.T) {
	f := func(raw string, want any) {
		t.Helper()
		got, err := decodeJSON([]byte(raw))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("unexpected decoding of %s; got %#v, %v; want %#v", raw, got, err, want)
		}
	}
	f(`"plain"`, "plain")
	f(`"esc\"aped \u00e9\n\ud83d\ude00"`, "esc\"aped é\n😀")
	f(` true `, true)
	f(`null`, nil)
	f(`[]`, []any{})
	f(`{}`, map[string]any{})
	f(`{"a": [1, 2.50, {"b": null}], "a2": "x", "a": 3}`, map[string]any{"a": int64(3), "a2": "x"})
	f(`[1, 2.50, {"b": null}]`, []any{int64(1), Numeric{text: "2.50"}, map[string]any{"b": nil}})

	for _, raw := range []string{``, `tru`, `"open`, `{"a" 1}`, `{"a": 1,}`, `[1 2]`, `1 2`, `01`, `-`, "\"ctl\x01\"", `{1: 2}`, `"\x"`} {
		if v, err := decodeJSON([]byte(raw)); err == nil {
			t.Fatalf("unexpected success for %q; got %#v", raw, v)
		}
	}
	deep := make([]byte, 0, 2*maxJSONDepth+10)
	for range maxJSONDepth + 2 {
		deep = append(deep, '[')
	}
	for range maxJSONDepth + 2 {
		deep = append(deep, ']')
	}
	if _, err := decodeJSON(deep); err == nil {
		t.Fatal("unexpected success for JSON nested too deeply")
	}
}
