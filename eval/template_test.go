package eval

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

func render(t *testing.T, src string, esc Escape, ev *decoder.Event) string {
	t.Helper()
	tp, err := CompileTemplate(src, esc, Options{})
	if err != nil {
		t.Fatalf("%s: unexpected compile error: %v", src, err)
	}
	got, err := tp.Render(NewEnv(ev, Meta{}))
	if err != nil {
		t.Fatalf("%s: unexpected render error: %v", src, err)
	}
	return got
}

func TestTemplateModes(t *testing.T) {
	f := func(src string, esc Escape, want string) {
		t.Helper()
		if got := render(t, src, esc, insertEvent()); got != want {
			t.Fatalf("%s (%s): unexpected result;\ngot  %s\nwant %s", src, esc, got, want)
		}
	}
	// values of every kind, from plain column references (raw JSON) and from
	// expressions (decoded values): both must render alike
	f(`{{ id }}|{{ status }}|{{ amount }}|{{ note }}|{{ flag }}|{{ customer.tags }}`, EscapeNone,
		`7|pending|500.00||true|["vip",3]`)
	f(`{{ id ?? 0 }}|{{ status ?? '' }}|{{ amount ?? 0 }}|{{ note ?? nil }}|{{ flag ?? 1 }}|{{ customer.tags ?? 0 }}`, EscapeNone,
		`7|pending|500.00||true|["vip",3]`)
	// objects: a plain reference keeps the JSON's key order, a computed one sorts keys
	f(`{{ items[1] }} {{ items[1] ?? 0 }} {{ customer.address }}`, EscapeNone, `{"sku":"B","qty":1} {"qty":1,"sku":"B"} {"city":"Oslo","zip":null}`)
	f(`{{ customer }}`, EscapeNone, `{"email":"ann@example.com","address":{"city":"Oslo","zip":null},"tags":["vip",3]}`)
	f(`{{ id }}|"{{ status }}"|{{ amount }}|{{ note }}|{{ flag }}|{{ customer.tags }}`, EscapeJSON,
		`7|"pending"|500.00|null|true|["vip",3]`)
	f(`{{ id ?? 0 }}|"{{ status ?? '' }}"|{{ amount ?? 0 }}|{{ note ?? nil }}|{{ flag ?? 1 }}`, EscapeJSON,
		`7|"pending"|500.00|null|true`)
	f(`user:{{ id }}:{{ status }}:{{ amount }}:{{ note }}`, EscapeGlob, `user:7:pending:500.00:`)
	// metadata and computed values
	f(`{{ event.id }} {{ event.commit_time }} {{ event_type }} {{ entity }} {{ event.xid }}`, EscapeNone,
		`0/16B3748:3 2026-03-01T12:30:45.123456Z INSERT public.orders 771`)
	f(`{{ data.customer.email }} {{ upper(name) }} {{ total * 2 }} {{ price * 3 }} {{ total / 4 }} {{ len(items) }}`, EscapeNone,
		`ann@example.com ANN 300 59.97 37.5 2`)
	f(`{{ status == 'pending' ? 'open' : 'closed' }} {{ total > 100 }}`, EscapeNone, `open true`)
	f(`{{ '}}' }} {{ '{{' }} {{ {'a': 1}.a }}`, EscapeNone, `}} {{ 1`)
	f(`{{ new }}`, EscapeJSON, `{"id":7,"status":"pending","total":150,"amount":500.00,"state":"paid","email":"ann@example.com","name":"Ann",`+
		`"customer":{"email":"ann@example.com","address":{"city":"Oslo","zip":null},"tags":["vip",3]},`+
		`"items":[{"sku":"A","qty":2},{"sku":"B","qty":1}],"big":123456789012345678901234567890,"bigfrac":12345678901234567890.123,`+
		`"price":19.99,"ratio":0.1,"code":"100","codenum":100,"note":null,"flag":true,"entity":"column named entity"}`)
	f(`{{ old }}|{{ old ?? 'none' }}`, EscapeNone, `|none`)
	f(`{{ old }}`, EscapeJSON, `null`)
}

func TestTemplateExactNumbers(t *testing.T) {
	ev := event(decoder.OpInsert, row("id", "1", "amount", "12345678901234567890.123", "tiny", "1e-400", "n", `{"x": 12.50}`), nil, decoder.OldNone)
	for _, esc := range []Escape{EscapeNone, EscapeJSON, EscapeGlob} {
		got := render(t, `{{ amount }} {{ data.amount }} {{ amount ?? 0 }} {{ string(amount) }} {{ tiny }} {{ n.x }} {{ n }}`, esc, ev)
		want := `12345678901234567890.123 12345678901234567890.123 12345678901234567890.123 12345678901234567890.123 1e-400 12.50 {"x":12.50}`
		if got != want {
			t.Fatalf("%s: unexpected result;\ngot  %s\nwant %s", esc, got, want)
		}
	}
}

func TestTemplateJSONInjection(t *testing.T) {
	evil := `Ann", "admin": true, "x": "`
	ev := event(decoder.OpInsert, orderRow("name", mustJSON(evil), "note", mustJSON("line\nbreak \\ \u2028 </script>")), nil, decoder.OldNone)
	for _, src := range []string{
		`{"name": "{{ name }}", "note": "{{ note }}", "id": {{ id }}}`,
		`{"name": "{{ upper(name) | lower() }}", "note": "{{ note ?? '' }}", "id": {{ id }}}`,
		`{"name": "{{ data.name }}", "note": "{{ new.note }}", "id": {{ key.id }}}`,
	} {
		tp, err := CompileTemplate(src, EscapeJSON, Options{})
		if err != nil {
			t.Fatal(err)
		}
		body, err := tp.RenderJSON(nil, NewEnv(ev, Meta{}))
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%s: body is not JSON: %v\n%s", src, err, body)
		}
		if len(got) != 3 || !strings.EqualFold(got["name"].(string), evil) || got["admin"] != nil {
			t.Fatalf("%s: injected; got %v", src, got)
		}
		if got["note"] != "line\nbreak \\ \u2028 </script>" {
			t.Fatalf("%s: unexpected note; got %q", src, got["note"])
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestRenderJSON(t *testing.T) {
	f := func(src string, want string) {
		t.Helper()
		tp, err := CompileTemplate(src, EscapeJSON, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := tp.RenderJSON([]byte("prefix:"), NewEnv(insertEvent(), Meta{}))
		if err != nil || string(got) != "prefix:"+want {
			t.Fatalf("%s: unexpected result; got %s, %v; want prefix:%s", src, got, err, want)
		}
	}
	f(`{"order": {{ id }}, "status": "{{ status }}"}`, `{"order": 7, "status": "pending"}`)
	f(`Order {{ id }} is "{{ status }}"`, `"Order 7 is \"pending\""`)
	f(`{{ customer.tags }}`, `["vip",3]`)
	f(`{{ status }}`, `"pending"`)
	f(`{{ total }}`, `150`)
	f(`{"static": true}`, `{"static": true}`)

	tp, _ := CompileTemplate(`{{ id }}`, EscapeNone, Options{})
	if _, err := tp.RenderJSON(nil, NewEnv(insertEvent(), Meta{})); !errors.Is(err, ErrNotJSONTemplate) {
		t.Fatalf("unexpected error; got %v; want ErrNotJSONTemplate", err)
	}
}

func TestTemplateGlob(t *testing.T) {
	f := func(src, id string, want string, hasGlob bool) {
		t.Helper()
		tp, err := CompileTemplate(src, EscapeGlob, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ev := event(decoder.OpInsert, orderRow("id", id), nil, decoder.OldNone)
		got, err := tp.Render(NewEnv(ev, Meta{}))
		if err != nil || got != want {
			t.Fatalf("%s with id %s: unexpected result; got %q, %v; want %q", src, id, got, err, want)
		}
		if tp.HasGlob() != hasGlob {
			t.Fatalf("%s: unexpected HasGlob; got %v; want %v", src, tp.HasGlob(), hasGlob)
		}
	}
	f(`user:{{ id }}:*`, `"*"`, `user:\*:*`, true)
	f(`user:{{ id }}`, `"*"`, `user:\*`, false)
	f(`user:{{ id }}`, `"a?b[c]\\d*"`, `user:a\?b\[c\]\\d\*`, false)
	f(`user:{{ id ?? '' }}`, `"a?b[c]\\d*"`, `user:a\?b\[c\]\\d\*`, false)
	f(`user:{{ [id, '*'] }}`, `1`, `user:\[1,"\*"\]`, false)
	f(`user:\*:{{ id }}`, `7`, `user:\*:7`, false)
	f(`user:{{ id }}:[ab]`, `7`, `user:7:[ab]`, true)
	f(`user:{{ id }}:?`, `7`, `user:7:?`, true)

	_, err := CompileTemplate(`user:\{{ id }}`, EscapeGlob, Options{})
	var e *Error
	if !errors.As(err, &e) || e.Column != 6 || !strings.Contains(e.Msg, "backslash") {
		t.Fatalf("unexpected error for a backslash before a placeholder; got %v", err)
	}
	if _, err := CompileTemplate(`user:\\{{ id }}`, EscapeGlob, Options{}); err != nil {
		t.Fatalf("unexpected error for an escaped backslash: %v", err)
	}
}

func TestTemplateStatic(t *testing.T) {
	tp, err := CompileTemplate(`no placeholders here, {not one} }}`, EscapeJSON, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !tp.Static() || tp.String() != `no placeholders here, {not one} }}` || tp.Escape() != EscapeJSON {
		t.Fatalf("unexpected template; static %v, source %q", tp.Static(), tp.String())
	}
	got, err := tp.Render(NewEnv(truncateEvent(), Meta{}))
	if err != nil || got != tp.String() {
		t.Fatalf("unexpected render; got %q, %v", got, err)
	}
	empty, _ := CompileTemplate(``, EscapeNone, Options{})
	if got, err := empty.Render(NewEnv(truncateEvent(), Meta{})); !empty.Static() || got != "" || err != nil {
		t.Fatalf("unexpected empty template render; got %q, %v", got, err)
	}
	dyn, _ := CompileTemplate(`{{ id }}`, EscapeNone, Options{})
	if dyn.Static() {
		t.Fatal("a template with a placeholder is not static")
	}
}

func TestTemplateCompileErrors(t *testing.T) {
	f := func(src string, line, col int, msg string) {
		t.Helper()
		_, err := CompileTemplate(src, EscapeNone, Options{})
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%q: unexpected error; got %v; want an *Error", src, err)
		}
		if e.Line != line || e.Column != col || !strings.Contains(e.Msg, msg) {
			t.Fatalf("%q: unexpected error; got %d:%d %q; want %d:%d %q", src, e.Line, e.Column, e.Msg, line, col, msg)
		}
	}
	f(`{{ unclosed`, 1, 1, "unclosed {{")
	f("line one\n  héllo {{ unclosed", 2, 9, "unclosed {{")
	f(`{{ 'a }}`, 1, 1, "unclosed {{")
	f(`Hi {{ }}`, 1, 6, "empty placeholder")
	f(`Hi {{ foo(1) }}`, 1, 7, "unknown function foo")
	f("Hi {{ name }},\nyour {{ status ==  }}", 2, 19, "unexpected token")
	f("Hi {{\n  name +\n  foo() }}", 3, 3, "unknown function foo")
	f(`{{ `+strings.Repeat("a", MaxExprLen+1)+` }}`, 1, 3, "longer than")
	f(strings.Repeat("x", MaxTemplateLen+1), 1, 1, "template longer than")
}

func TestTemplateRenderErrors(t *testing.T) {
	f := func(src string, ev *decoder.Event, line, col int, msg string, reason error) {
		t.Helper()
		tp, err := CompileTemplate(src, EscapeJSON, Options{})
		if err != nil {
			t.Fatal(err)
		}
		buf := []byte("keep")
		out, err := tp.RenderTo(buf, NewEnv(ev, Meta{}))
		var e *Error
		if !errors.As(err, &e) || e.Line != line || e.Column != col || !strings.Contains(e.Msg, msg) || !errors.Is(err, reason) {
			t.Fatalf("%q: unexpected error; got %v; want %d:%d %q", src, err, line, col, msg)
		}
		if string(out) != "keep" {
			t.Fatalf("%q: unexpected buffer after an error; got %q", src, out)
		}
	}
	f(`Hi {{ nope }}`, insertEvent(), 1, 7, `field "nope" not in data`, ErrMissingField)
	f(`Hi {{   data.nope }}`, insertEvent(), 1, 9, `field "nope" not in data`, ErrMissingField)
	f("Hi\n {{ upper(nope) }}", insertEvent(), 2, 11, `field "nope" not in data`, ErrMissingField)
	f(`{{ id }} {{ customer.phone }}`, insertEvent(), 1, 13, `field "phone" not in data.customer`, ErrMissingField)
	f(`{{ doc }}`, updateToast(), 1, 4, `value of "doc" not available`, ErrUnavailable)
	f(`{{ new.doc.title }}`, updateToast(), 1, 4, `value of "doc" not available`, ErrUnavailable)
	f(`{{ old.status }}`, updateNone(), 1, 4, `REPLICA IDENTITY FULL`, ErrMissingField)
	f(`{{ field_changed('status') }}`, updateNone(), 1, 4, `REPLICA IDENTITY FULL`, ErrNoOldImage)
}

func TestTemplateNonFinite(t *testing.T) {
	tp, _ := CompileTemplate(`{{ 1 / (total - total) }}`, EscapeJSON, Options{})
	if _, err := tp.Render(NewEnv(insertEvent(), Meta{})); err == nil {
		t.Fatal("unexpected success writing +Inf into JSON")
	}
	if got := render(t, `{{ 1 / (total - total) }}`, EscapeNone, insertEvent()); got != "+Inf" {
		t.Fatalf("unexpected text; got %q", got)
	}
}

// TestConcurrentUse shares compiled templates and conditions between goroutines,
// each with its own Env; run with -race.
func TestConcurrentUse(t *testing.T) {
	tp, _ := CompileTemplate(`{"id": {{ id }}, "s": "{{ status }}", "c": {{ customer }}, "x": {{ total * 2 }}}`, EscapeJSON, Options{})
	cond, _ := CompileCondition(`status == 'pending' && customer.address.city == 'Oslo' && amount >= 500`, Options{})
	ev := insertEvent()
	want := render(t, tp.String(), EscapeJSON, ev)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				env := NewEnv(ev, Meta{})
				if ok, err := cond.Eval(env); !ok || err != nil {
					t.Errorf("unexpected condition result; got %v, %v", ok, err)
					return
				}
				if got, err := tp.Render(env); got != want || err != nil {
					t.Errorf("unexpected render; got %s, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestTemplateColumns: the columns a template's placeholders read by name, with
// their positions in the template, for checking against the table.
func TestTemplateColumns(t *testing.T) {
	f := func(src string, want string) {
		t.Helper()
		tm, err := CompileTemplate(src, EscapeNone, Options{})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		var got []string
		for _, col := range tm.Columns() {
			got = append(got, fmt.Sprintf("%s@%d:%d", col.Name, col.Line, col.Column))
		}
		if strings.Join(got, " ") != want {
			t.Fatalf("%s: unexpected columns; got %q; want %q", src, strings.Join(got, " "), want)
		}
	}
	f(`no placeholders`, "")
	f(`{{ new.gen }}`, "gen@1:8")
	f(`order {{ id }} is {{ new.status ?? 'x' }}`, "id@1:10 status@1:26")
	f("line one\n  {{ data.customer.email }} and {{ upper(old.name) }}", "customer@2:11 name@2:46")
	f(`{{ event.table }} {{ entity }}`, "")
}
