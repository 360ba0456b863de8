package eval

import "testing"

var sinkEnv *Env

func BenchmarkNewEnv(b *testing.B) {
	ev := updateFull()
	b.ReportAllocs()
	for b.Loop() {
		sinkEnv = NewEnv(ev, Meta{Entity: "Order"})
	}
}

func BenchmarkCondition(b *testing.B) {
	for _, c := range []struct{ name, src string }{
		{"bare", `status == 'shipped'`},
		{"original", `field_changed_to('state', 'paid') && amount >= 500`},
		{"jsonb", `customer.address.city == 'Oslo' && 'vip' in customer.tags`},
		{"event", `event_type == 'UPDATE' && event.table == 'orders'`},
	} {
		cond, err := CompileCondition(c.src, Options{})
		if err != nil {
			b.Fatal(err)
		}
		ev := updateFull()
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				// A fresh Env per event, as the pipeline does.
				if ok, err := cond.Eval(NewEnv(ev, Meta{})); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

func BenchmarkTemplate(b *testing.B) {
	for _, c := range []struct {
		name, src string
		esc       Escape
	}{
		{"refs", `Order {{ id }} is {{ status }} ({{ amount }})`, EscapeNone},
		{"json_body", `{"id": {{ id }}, "status": "{{ status }}", "email": "{{ customer.email }}", "event": "{{ event.id }}", "total": {{ total }}}`, EscapeJSON},
		{"glob", `orders:{{ id }}:*`, EscapeGlob},
		{"row", `{{ new }}`, EscapeJSON},
	} {
		tp, err := CompileTemplate(c.src, c.esc, Options{})
		if err != nil {
			b.Fatal(err)
		}
		ev := updateFull()
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 4096)
			for b.Loop() {
				var err error
				if buf, err = tp.RenderTo(buf[:0], NewEnv(ev, Meta{})); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEvent is the work of one matching event: a condition and three templates
// sharing one Env.
func BenchmarkEvent(b *testing.B) {
	cond, _ := CompileCondition(`field_changed_to('status', 'shipped') && total > 100`, Options{})
	url, _ := CompileTemplate(`https://hooks.example.com/orders/{{ id }}`, EscapeNone, Options{})
	body, _ := CompileTemplate(`{"id": {{ id }}, "status": "{{ status }}", "email": "{{ customer.email }}"}`, EscapeJSON, Options{})
	key, _ := CompileTemplate(`orders:{{ id }}`, EscapeGlob, Options{})
	ev := updateFull()
	b.ReportAllocs()
	buf := make([]byte, 0, 4096)
	for b.Loop() {
		env := NewEnv(ev, Meta{})
		if ok, err := cond.Eval(env); !ok || err != nil {
			b.Fatal(ok, err)
		}
		buf, _ = url.RenderTo(buf[:0], env)
		buf, _ = body.RenderJSON(buf[:0], env)
		buf, _ = key.RenderTo(buf[:0], env)
	}
}
