package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestTermText(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := termText(in); got != want {
			t.Fatalf("unexpected termText(%q); got %q; want %q", in, got, want)
		}
	}
	f("plain.table_1", "plain.table_1")
	f("esc\x1b[31mRED\x1b]0;PWNED\a", `esc\x1b[31mRED\x1b]0;PWNED\x07`)
	f("a\nb\tc\rd\x00e\x7f", `a\nb\tc\rd\x00e\x7f`)
	f("csi\u009b31m nel\u0085 rlo\u202eevil", `csi\u009b31m nel\u0085 rlo\u202eevil`)
	f("é 👩‍👩‍👧 日本", "é 👩‍👩‍👧 日本")
	f("bad\xffutf8\xc3", `bad\xffutf8\xc3`)
}

// TestTermWriter: the writer keeps newlines and tabs, escapes every other control
// character even when a rune is split between writes, and leaves JSON valid and
// equal in meaning.
func TestTermWriter(t *testing.T) {
	var b bytes.Buffer
	w := newTermWriter(&b)
	in := "line 1\tcol\n\x1b]0;PWNED\a \u009b2J ok é\n"
	for i := 0; i < len(in); i++ { // one byte per write: runes are split
		w.Write([]byte{in[i]})
	}
	w.Write([]byte("\xc3"))
	w.Flush()
	if want := "line 1\tcol\n\\x1b]0;PWNED\\x07 \\u009b2J ok é\n\\xc3"; b.String() != want {
		t.Fatalf("unexpected output; got %q; want %q", b.String(), want)
	}

	b.Reset()
	w = newTermWriter(&b)
	doc := map[string]string{"table": "esc\x1b[31mRED\u0085\u202e\u009b"}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		t.Fatal(err)
	}
	var back map[string]string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["table"] != doc["table"] {
		t.Fatalf("JSON through the writer changed; got %q (%v); want %q", back["table"], err, doc["table"])
	}
	for _, c := range b.Bytes() {
		if c < 0x20 && c != '\n' {
			t.Fatalf("control byte %#x in %q", c, b.Bytes())
		}
	}
}
