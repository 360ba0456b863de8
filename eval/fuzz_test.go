package eval

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// FuzzCondition compiles and evaluates arbitrary conditions: nothing may panic,
// and a failed evaluation always comes with false.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{
		`status == 'shipped'`, `field_changed_to('state', 'paid') && amount >= 500`,
		`customer?.address.city ?? 'x'`, `let c = items; c[0].qty > numeric('1.5')`,
		`any(items, .qty in [1, 2.0]) || has_field(name)`, `(new ?? old).total * -2 > 1e3`,
		`event.commit_time < now() && message == nil`, `data['customer']['tags'][-1] != nil`,
	} {
		f.Add(s)
	}
	envs := []func() *Env{
		func() *Env { return NewEnv(insertEvent(), Meta{}) },
		func() *Env { return NewEnv(updateNone(), Meta{}) },
		func() *Env { return NewEnv(updateToast(), Meta{}) },
		func() *Env { return NewEnv(messageEvent(), Meta{}) },
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := CompileCondition(src, Options{})
		if err != nil {
			return
		}
		for _, env := range envs {
			if ok, err := c.Eval(env()); ok && err != nil {
				t.Fatalf("%q: true with an error: %v", src, err)
			}
		}
	})
}

// FuzzTemplate compiles and renders arbitrary templates in every mode.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		`{"a": "{{ name }}", "b": {{ customer }}}`, `user:{{ id }}:*`, `{{ '}}' }}{{`,
		`{{ {'a': {'b': 1}}.a.b }} }}`, "x\n{{ items[0].sku }}\\{{ id }}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		for _, esc := range []Escape{EscapeNone, EscapeJSON, EscapeGlob} {
			tp, err := CompileTemplate(src, esc, Options{})
			if err != nil {
				continue
			}
			env := NewEnv(insertEvent(), Meta{})
			if _, err := tp.Render(env); err != nil {
				continue
			}
			if esc == EscapeJSON {
				if _, err := tp.RenderJSON(nil, env); err != nil {
					t.Fatalf("%q: RenderJSON failed after Render succeeded: %v", src, err)
				}
			}
		}
	})
}

// FuzzEscapes renders event values chosen by the fuzzer: a glob template's result
// must have no unescaped glob character beyond its own text, and a JSON body must
// stay the same document whatever the value holds.
func FuzzEscapes(f *testing.F) {
	for _, s := range []string{`*`, `a?b[c]\`, `", "admin": true, "x": "`, "\\\"\n\u2028\x00", "\xff\xfe"} {
		f.Add(s)
	}
	globs := []string{`k:{{ id }}`, `k:{{ customer.k }}`, `k:{{ id ?? '' }}`, `k:{{ customer }}`, `k:{{ [id] }}`}
	bodies := []string{`{"a": "{{ id }}", "b": {{ customer }}}`, `{"a": "{{ id ?? '' }}", "b": {{ customer ?? nil }}}`}
	f.Fuzz(func(t *testing.T, v string) {
		ev := event(decoder.OpInsert, row("id", mustJSON(v), "customer", mustJSON(map[string]string{"k": v})), nil, decoder.OldNone)
		env := NewEnv(ev, Meta{})
		for _, src := range globs {
			tp, _ := CompileTemplate(src, EscapeGlob, Options{})
			got, err := tp.Render(env)
			if err != nil || hasUnescapedGlob(got) {
				t.Fatalf("%s with %q: got %q, %v", src, v, got, err)
			}
		}
		for _, src := range bodies {
			tp, _ := CompileTemplate(src, EscapeJSON, Options{})
			body, err := tp.RenderJSON(nil, env)
			var doc struct {
				A string            `json:"a"`
				B map[string]string `json:"b"`
			}
			if err != nil || json.Unmarshal(body, &doc) != nil {
				t.Fatalf("%s with %q: not the template's document: %s, %v", src, v, body, err)
			}
			var keys map[string]any
			_ = json.Unmarshal(body, &keys)
			if want := strings.ToValidUTF8(v, "\uFFFD"); len(keys) != 2 || doc.A != want && utf8.ValidString(v) || doc.B["k"] != doc.A {
				t.Fatalf("%s with %q: injected or altered: %s", src, v, body)
			}
		}
	})
}

func hasUnescapedGlob(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '*', '?', '[', ']':
			return true
		}
	}
	return false
}
