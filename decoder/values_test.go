package decoder

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestScalarValues(t *testing.T) {
	var v valueDecoder
	f := func(k valueKind, in, want string) {
		t.Helper()
		got, err := v.appendScalar(nil, k, []byte(in))
		if err != nil {
			t.Fatalf("unexpected error for %q: %v", in, err)
		}
		if string(got) != want {
			t.Fatalf("unexpected JSON for %q; got %s; want %s", in, got, want)
		}
		if !json.Valid(got) {
			t.Fatalf("invalid JSON for %q: %s", in, got)
		}
	}
	// Numbers keep their digits; what is not a JSON number is a string.
	f(kindNumber, "0", `0`)
	f(kindNumber, "-9223372036854775808", `-9223372036854775808`)
	f(kindNumber, "123.4500", `123.4500`)
	f(kindNumber, "-0", `-0`)
	f(kindNumber, "1e+100", `1e+100`)
	f(kindNumber, "1.5e-07", `1.5e-07`)
	f(kindNumber, "NaN", `"NaN"`)
	f(kindNumber, "Infinity", `"Infinity"`)
	f(kindNumber, "-Infinity", `"-Infinity"`)
	f(kindNumber, "+1", `"+1"`)
	f(kindNumber, "01", `"01"`)
	f(kindNumber, "1.", `"1."`)
	f(kindNumber, ".5", `".5"`)
	f(kindNumber, "1e", `"1e"`)
	f(kindNumber, "", `""`)
	long := "1" + string(make([]byte, 0)) // 1000 digits
	for len(long) < 1000 {
		long += "7"
	}
	f(kindNumber, long+".5", long+".5")
	// Booleans.
	f(kindBool, "t", `true`)
	f(kindBool, "f", `false`)
	f(kindBool, "yes", `"yes"`)
	// bytea in hex and escape formats, base64 out.
	f(kindBytea, `\x`, `""`)
	f(kindBytea, `\x00ff10`, `"AP8Q"`)
	f(kindBytea, `\xDEADbeef`, `"3q2+7w=="`)
	f(kindBytea, `a\000\\b\377`, `"YQBcYv8="`)
	f(kindBytea, `\x0`, `"\\x0"`)
	f(kindBytea, `\xzz`, `"\\xzz"`)
	f(kindBytea, `\9`, `"\\9"`)
	// json: embedded, whitespace outside strings removed, everything else kept.
	f(kindJSON, `{"b": 1, "a" :[1, 2.50, "x y"], "b": 2}`, `{"b":1,"a":[1,2.50,"x y"],"b":2}`)
	f(kindJSON, " \"\\u0000 \\\" \" \n", `"\u0000 \" "`)
	f(kindJSON, `{"a": `, `"{\"a\": "`)
	// Strings.
	f(kindString, "a\"b\\c\n\x01\u2028é👩‍👩‍👧", `"a\"b\\c\n\u0001\u2028é👩‍👩‍👧"`)
}

func TestInvalidUTF8(t *testing.T) {
	var v valueDecoder
	for _, k := range []valueKind{kindString, kindJSON, kindTimestamp} {
		if _, err := v.appendScalar(nil, k, []byte("a\xffb")); !errors.Is(err, ErrInvalidUTF8) {
			t.Fatalf("kind %d: unexpected error; got %v; want ErrInvalidUTF8", k, err)
		}
	}
	dst := []byte("prefix")
	got, err := v.appendArray(dst, kindString, []byte("{ok,\"b\xc3\"}"))
	if !errors.Is(err, ErrInvalidUTF8) || string(got) != "prefix" {
		t.Fatalf("unexpected array result %q, %v", got, err)
	}
}

func TestTimestamps(t *testing.T) {
	var v valueDecoder
	f := func(k valueKind, in, want string) {
		t.Helper()
		got, err := v.appendScalar(nil, k, []byte(in))
		if err != nil || string(got) != want {
			t.Fatalf("unexpected JSON for %q; got %s, %v; want %s", in, got, err, want)
		}
	}
	f(kindTimestamp, "2024-01-02 03:04:05", `"2024-01-02T03:04:05"`)
	f(kindTimestamp, "2024-01-02 03:04:05.123456", `"2024-01-02T03:04:05.123456"`)
	f(kindTimestamp, "12345-01-02 03:04:05", `"12345-01-02T03:04:05"`)
	f(kindTimestamp, "infinity", `"infinity"`)
	f(kindTimestamp, "0044-03-15 12:00:00 BC", `"0044-03-15 12:00:00 BC"`)
	f(kindTimestamp, "01/02/2024 03:04:05", `"01/02/2024 03:04:05"`) // DateStyle SQL: kept
	f(kindTimestamp, "2024-01-02 03:04:05.1234567", `"2024-01-02 03:04:05.1234567"`)
	f(kindTimestampTZ, "2024-01-02 03:04:05+00", `"2024-01-02T03:04:05Z"`)
	f(kindTimestampTZ, "2024-01-02 03:04:05.5+05:30", `"2024-01-02T03:04:05.5+05:30"`)
	f(kindTimestampTZ, "2024-01-02 03:04:05-03", `"2024-01-02T03:04:05-03:00"`)
	f(kindTimestampTZ, "2024-01-02 03:04:05-00:00:00", `"2024-01-02T03:04:05Z"`)
	f(kindTimestampTZ, "1850-06-01 00:19:32.25+00:19:32", `"1850-06-01T00:00:00.25Z"`)
	f(kindTimestampTZ, "0001-01-01 00:00:00+00:19:32", `"0001-01-01 00:00:00+00:19:32"`) // before year 1 in UTC
	f(kindTimestampTZ, "-infinity", `"-infinity"`)
	f(kindTimestampTZ, "2024-01-02 03:04:05+0530", `"2024-01-02 03:04:05+0530"`)
	f(kindTimestampTZ, "2024-01-02 03:04:05", `"2024-01-02 03:04:05"`)
	f(kindTimeTZ, "03:04:05+00", `"03:04:05Z"`)
	f(kindTimeTZ, "03:04:05.999999-03:30", `"03:04:05.999999-03:30"`)
	f(kindTimeTZ, "24:00:00+14", `"24:00:00+14:00"`)
	f(kindTimeTZ, "03:04:05+00:19:32", `"03:04:05+00:19:32"`)
}

func TestArrays(t *testing.T) {
	var v valueDecoder
	f := func(elem valueKind, in, want string) {
		t.Helper()
		got, err := v.appendArray(nil, elem, []byte(in))
		if err != nil {
			t.Fatalf("unexpected error for %q: %v", in, err)
		}
		if string(got) != want {
			t.Fatalf("unexpected JSON for %q; got %s; want %s", in, got, want)
		}
		if !json.Valid(got) {
			t.Fatalf("invalid JSON for %q: %s", in, got)
		}
	}
	f(kindNumber, "{}", `[]`)
	f(kindNumber, "{1,2,NULL,-4}", `[1,2,null,-4]`)
	f(kindNumber, "{{1,2},{3,4}}", `[[1,2],[3,4]]`)
	f(kindNumber, "{{{1}},{{2}}}", `[[[1]],[[2]]]`)
	f(kindNumber, "{NaN,1.50,Infinity}", `["NaN",1.50,"Infinity"]`)
	f(kindNumber, "{ 1 , 2 }", `[1,2]`)
	f(kindNumber, "[0:1]={7,8}", `"[0:1]={7,8}"`)
	f(kindNumber, "[1:1][2:3]={{1,2}}", `"[1:1][2:3]={{1,2}}"`)
	f(kindString, `{"a b","c,d","q\"uote","back\\slash",NULL,"NULL",null,""}`, `["a b","c,d","q\"uote","back\\slash",null,"NULL",null,""]`)
	f(kindString, `{a\,b,\NULL,x\ }`, `["a,b","NULL","x "]`)
	f(kindString, "{\"multi\nline\"}", `["multi\nline"]`)
	f(kindBool, "{t,f,NULL}", `[true,false,null]`)
	f(kindBytea, `{"\\x0001","\\x"}`, `["AAE=",""]`)
	f(kindJSON, `{"{\"k\": [1, {\"z\": null}]}","\"s\""}`, `[{"k":[1,{"z":null}]},"s"]`)
	f(kindTimestampTZ, `{"2024-01-02 03:04:05+00",infinity}`, `["2024-01-02T03:04:05Z","infinity"]`)
	// Not array literals: kept as text.
	f(kindNumber, "", `""`)
	f(kindNumber, "{1,2", `"{1,2"`)
	f(kindNumber, "{1,2}x", `"{1,2}x"`)
	f(kindNumber, "{1,,2}", `"{1,,2}"`)
	f(kindNumber, `{"1}`, `"{\"1}"`)
	f(kindNumber, "{1\\", `"{1\\"`)
	f(kindNumber, "{{{{{{{1}}}}}}}", `"{{{{{{{1}}}}}}}"`)
	f(kindNumber, "{{{{{{1}}}}}}", `[[[[[[1]]]]]]`)
}

func TestBinaryFloat(t *testing.T) {
	f := func(x float64, bits int, want string) {
		t.Helper()
		if got := string(appendFloat(nil, x, bits)); got != want {
			t.Fatalf("unexpected text for %v; got %s; want %s", x, got, want)
		}
	}
	f(0, 64, "0")
	f(math.Copysign(0, -1), 64, "-0")
	f(1.5, 64, "1.5")
	f(0.1, 64, "0.1")
	f(1234567, 64, "1234567")
	f(1e14, 64, "100000000000000")
	f(1e15, 64, "1e+15")
	f(123456789012345678, 64, "1.2345678901234568e+17")
	f(0.0001, 64, "0.0001")
	f(0.00001, 64, "1e-05")
	f(-1.25e-300, 64, "-1.25e-300")
	f(math.NaN(), 64, `"NaN"`)
	f(math.Inf(1), 64, `"Infinity"`)
	f(math.Inf(-1), 64, `"-Infinity"`)
	f(float64(float32(1.1)), 32, "1.1")
	f(float64(float32(123456)), 32, "123456")
	f(float64(float32(1234567)), 32, "1.234567e+06")
}

// FuzzJSON checks the one-pass JSON validator and compactor against encoding/json.
func FuzzJSON(f *testing.F) {
	for _, s := range []string{`{"a": [1, 2.5e+3, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"]}`, `  "s"  `, `[`, `{"a" 1}`,
		`-0.0e-0`, `01`, `[1,]`, `{"a":1,}`, "\"\x01\"", `"\u12"`, `[[[[]]]]`, `{} {}`, `1 2`, `tru`, `nulls`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := appendJSON([]byte("x"), data)
		if want := json.Valid(data); ok != want {
			t.Fatalf("validity of %q; got %v; want %v", data, ok, want)
		}
		if ok {
			if want := appendCompactJSON([]byte("x"), data); string(got) != string(want) {
				t.Fatalf("compaction of %q; got %q; want %q", data, got, want)
			}
		}
	})
}

func TestDeepJSON(t *testing.T) {
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	got, ok := appendJSON(nil, []byte(" "+deep))
	if !ok || string(got) != deep {
		t.Fatalf("unexpected result for a deeply nested document: %v", ok)
	}
	if _, ok := appendJSON(nil, []byte(deep+"]")); ok {
		t.Fatalf("accepted an unbalanced document")
	}
}
