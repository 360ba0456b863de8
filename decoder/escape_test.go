package decoder

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestLineBreakRunesEscaped: U+0085 (NEL) and the other C1 controls are written as
// \u escapes like U+2028 and U+2029, in text values, json values (also the deep ones
// that fall back to compaction), arrays and names, so no event line holds a rune
// that a line-oriented reader or a terminal takes for a line break or a control.
func TestLineBreakRunesEscaped(t *testing.T) {
	var v valueDecoder
	raw := "a\u0085b\u0080c\u009fd\u00a0e\u2028f\u2029g"
	want := `a\u0085b\u0080c\u009fd` + "\u00a0" + `e\u2028f\u2029g`
	check := func(what string, got []byte, wantJSON string) {
		t.Helper()
		if string(got) != wantJSON {
			t.Fatalf("%s: unexpected JSON; got %s; want %s", what, got, wantJSON)
		}
		var back any
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%s: not JSON: %v", what, err)
		}
		for _, r := range []string{"\u0085", "\u0080", "\u009f", "\u2028", "\u2029"} {
			if strings.Contains(string(got), r) {
				t.Fatalf("%s: raw %U in %q", what, []rune(r)[0], got)
			}
		}
	}
	got, err := v.appendScalar(nil, kindString, []byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	check("text", got, `"`+want+`"`)
	got, err = v.appendScalar(nil, kindJSON, []byte(`{"k`+raw+`": ["`+raw+`"]}`))
	if err != nil {
		t.Fatal(err)
	}
	check("json", got, `{"k`+want+`":["`+want+`"]}`)
	got, err = v.appendArray(nil, kindString, []byte(`{"`+raw+`",x}`))
	if err != nil {
		t.Fatal(err)
	}
	check("text[]", got, `["`+want+`","x"]`)
	deep := strings.Repeat("[", maxJSONDepth+1) + `"` + raw + `"` + strings.Repeat("]", maxJSONDepth+1)
	got, ok := appendJSON(nil, []byte(deep))
	if !ok {
		t.Fatal("deep JSON refused")
	}
	check("deep json", got, strings.Repeat("[", maxJSONDepth+1)+`"`+want+`"`+strings.Repeat("]", maxJSONDepth+1))
	check("name", AppendJSONString(nil, raw), `"`+want+`"`)
}
