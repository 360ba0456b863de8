package eval

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

type condCase struct {
	ev   func() *decoder.Event
	src  string
	want bool
	err  string // substring of the evaluation error; empty means no error
	is   error  // the error's reason, when err is set
}

func runConditions(t *testing.T, meta Meta, cases []condCase) {
	t.Helper()
	for _, c := range cases {
		cond, err := CompileCondition(c.src, Options{})
		if err != nil {
			t.Errorf("%s: unexpected compile error: %v", c.src, err)
			continue
		}
		got, err := cond.Eval(NewEnv(c.ev(), meta))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: unexpected error: %v", c.src, err)
		case c.err == "" && got != c.want:
			t.Errorf("%s: unexpected result; got %v; want %v", c.src, got, c.want)
		case c.err != "" && err == nil:
			t.Errorf("%s: unexpected success; got %v; want error %q", c.src, got, c.err)
		case c.err != "" && !strings.Contains(err.Error(), c.err):
			t.Errorf("%s: unexpected error; got %q; want it to contain %q", c.src, err, c.err)
		case c.is != nil && !errors.Is(err, c.is):
			t.Errorf("%s: unexpected error reason; got %v; want %v", c.src, err, c.is)
		case c.err != "" && got:
			t.Errorf("%s: an error must come with false", c.src)
		}
	}
}

func TestOriginalExamples(t *testing.T) {
	runConditions(t, Meta{}, []condCase{
		{ev: updateFull, src: `status == 'shipped'`, want: true},
		{ev: insertEvent, src: `status == 'shipped'`, want: false},
		{ev: insertEvent, src: `total > 100 && status == 'pending'`, want: true},
		{ev: updateFull, src: `total > 100 && status == 'pending'`, want: false},
		{ev: updateFull, src: `field_changed_to('state', 'paid') && amount >= 500`, want: true},
		{ev: insertEvent, src: `field_changed_to('state', 'paid') && amount >= 500`, want: false},
		{ev: updateFull, src: `has_field('email') && !field_changed('email')`, want: true},
		{ev: insertEvent, src: `has_field('email') && !field_changed('email')`, want: true},
		{ev: updateFull, src: `data.status == 'shipped'`, want: true},
		{ev: insertEvent, src: `event_type == 'INSERT'`, want: true},
		{ev: updateFull, src: `event_type == 'INSERT'`, want: false},
	})
}

func TestNumbers(t *testing.T) {
	runConditions(t, Meta{}, []condCase{
		// numeric 500.00 against int, float and numeric literals
		{ev: insertEvent, src: `amount == 500`, want: true},
		{ev: insertEvent, src: `amount == 500.0`, want: true},
		{ev: insertEvent, src: `amount >= 500 && amount <= 500`, want: true},
		{ev: insertEvent, src: `amount > 499.99 && amount < 500.001`, want: true},
		{ev: insertEvent, src: `amount == numeric('500.000')`, want: true},
		{ev: insertEvent, src: `amount != 500.01`, want: true},
		// int column against floats
		{ev: insertEvent, src: `total == 150.0`, want: true},
		{ev: insertEvent, src: `total == 150.5`, want: false},
		{ev: insertEvent, src: `total < 150.5`, want: true},
		{ev: insertEvent, src: `total == numeric('150.000000000000001')`, want: false},
		// 30-digit numeric: exact, never equal to a neighbour or a float
		{ev: insertEvent, src: `big == numeric('123456789012345678901234567890')`, want: true},
		{ev: insertEvent, src: `big == numeric('123456789012345678901234567891')`, want: false},
		{ev: insertEvent, src: `big < numeric('123456789012345678901234567891')`, want: true},
		{ev: insertEvent, src: `big == 1.2345678901234568e29`, want: false},
		{ev: insertEvent, src: `big > 1e29 && big < 1e30`, want: true},
		{ev: insertEvent, src: `big > 9223372036854775807`, want: true},
		{ev: insertEvent, src: `bigfrac == numeric('12345678901234567890.1230')`, want: true},
		{ev: insertEvent, src: `bigfrac == numeric(string(bigfrac))`, want: true},
		{ev: insertEvent, src: `numeric(status) == 1`, err: `numeric: argument is not a JSON number`},
		{ev: insertEvent, src: `bigfrac == numeric('12345678901234567890.124')`, want: false},
		{ev: insertEvent, src: `bigfrac > numeric('12345678901234567890.1229999999')`, want: true},
		// floats as written
		{ev: insertEvent, src: `price == 19.99`, want: true},
		{ev: insertEvent, src: `ratio == 0.1 && ratio == 0.10`, want: true},
		{ev: insertEvent, src: `ratio < 0.1000000000001`, want: true},
		// arithmetic computes in float64
		{ev: insertEvent, src: `price * 2 == 39.98`, want: true},
		{ev: insertEvent, src: `total + 1 == 151`, want: true},
		{ev: insertEvent, src: `-amount == -500`, want: true},
		{ev: insertEvent, src: `round(price) == 20 && abs(-amount) == 500`, want: true},
		{ev: insertEvent, src: `max(amount, total) == 500`, want: true},
		// strings and numbers never meet; quoted literals stay strings
		{ev: insertEvent, src: `code == '100'`, want: true},
		{ev: insertEvent, src: `code == 100`, want: false},
		{ev: insertEvent, src: `codenum == '100'`, want: false},
		{ev: insertEvent, src: `codenum == 100.00`, want: true},
		{ev: insertEvent, src: `status != 100`, want: true},
		{ev: insertEvent, src: `status > 100`, err: "cannot compare string > number"},
		{ev: insertEvent, src: `code >= 100`, err: "cannot compare string >= number"},
		{ev: insertEvent, src: `note < 1`, err: "cannot compare null < number"},
		{ev: insertEvent, src: `status < 'q' && status > 'a'`, want: true},
		// null and bool
		{ev: insertEvent, src: `note == nil && note != 0 && note != ''`, want: true},
		{ev: insertEvent, src: `flag && flag == true`, want: true},
		// in: element equality as ==
		{ev: insertEvent, src: `status in ['pending', 'paid']`, want: true},
		{ev: insertEvent, src: `amount in [1, 500]`, want: true},
		{ev: insertEvent, src: `codenum in ['100']`, want: false},
		{ev: insertEvent, src: `total not in [1, 2]`, want: true},
	})
}

func TestPaths(t *testing.T) {
	runConditions(t, Meta{}, []condCase{
		{ev: insertEvent, src: `data.customer.email == 'ann@example.com'`, want: true},
		{ev: insertEvent, src: `customer.address.city == 'Oslo'`, want: true},
		{ev: insertEvent, src: `new.customer.address.zip == nil`, want: true},
		{ev: insertEvent, src: `data['customer']['email'] == email`, want: true},
		{ev: insertEvent, src: `customer.tags[0] == 'vip' && customer.tags[-1] == 3`, want: true},
		{ev: insertEvent, src: `items[1].sku == 'B' && items[0].qty * 2 == 4`, want: true},
		{ev: insertEvent, src: `'vip' in customer.tags && 3.0 in customer.tags`, want: true},
		{ev: insertEvent, src: `'email' in customer && !('phone' in customer)`, want: true},
		{ev: insertEvent, src: `any(items, .qty > 1) && len(items) == 2`, want: true},
		{ev: insertEvent, src: `filter(items, .sku == 'A')[0].qty == 2`, want: true},
		{ev: insertEvent, src: `customer.tags == ['vip', 3.0]`, want: true},
		{ev: insertEvent, src: `let c = customer; c.address.city == 'Oslo'`, want: true},
		{ev: insertEvent, src: `let status = 'mine'; status == 'mine'`, want: true},
		{ev: insertEvent, src: `upper(name) == 'ANN' && name startsWith 'A'`, want: true},
		{ev: insertEvent, src: `key.id == 7 && new.id == 7`, want: true},
		// the reserved names win; the column stays reachable through data
		{ev: insertEvent, src: `entity == 'public.orders' && data.entity == 'column named entity'`, want: true},
	})
}

func TestMissingFields(t *testing.T) {
	runConditions(t, Meta{}, []condCase{
		{ev: insertEvent, src: `nope == 1`, err: `field "nope" not in data`, is: ErrMissingField},
		{ev: insertEvent, src: `nope != 1`, err: `field "nope" not in data`, is: ErrMissingField},
		{ev: insertEvent, src: `!(nope == 'x')`, err: `field "nope" not in data`, is: ErrMissingField},
		{ev: insertEvent, src: `new.nope == 1`, err: `field "nope" not in new`, is: ErrMissingField},
		{ev: insertEvent, src: `data.customer.phone == '1'`, err: `field "phone" not in data.customer`, is: ErrMissingField},
		{ev: insertEvent, src: `customer.address.street == ''`, err: `field "street" not in data.customer.address`, is: ErrMissingField},
		{ev: insertEvent, src: `items[5].sku == 'A'`, err: `index 5 out of range in data.items`, is: ErrMissingField},
		{ev: insertEvent, src: `customer.address.zip.code == 1`, err: `cannot read "code" of null (data.customer.address.zip)`, is: ErrMissingField},
		{ev: insertEvent, src: `customer.email.domain == 'x'`, err: `cannot read field "domain" of string`},
		{ev: insertEvent, src: `all(items, .nope > 0)`, err: `field "nope" not in object`, is: ErrMissingField},
		{ev: insertEvent, src: `old.status == 'x'`, err: `field "status" not in old (INSERT event has no old image)`, is: ErrMissingField},
		{ev: updateNone, src: `old.status == 'x'`, err: "set REPLICA IDENTITY FULL on public.orders or enable caching", is: ErrMissingField},
		{ev: deleteKey, src: `status == 'x'`, err: `field "status" not in data (old_kind key`, is: ErrMissingField},
		{ev: truncateEvent, src: `status == 'x'`, err: `field "status" not in data (TRUNCATE event has no data image)`, is: ErrMissingField},
		{ev: insertEvent, src: `event.nope == 1`, err: `field "nope" not in event`, is: ErrMissingField},
		{ev: updateFull, src: `changes.email.old == 'x'`, err: `field "email" not in changes`, is: ErrMissingField},
		{ev: updateNone, src: `changes.status.old == 'x'`, err: `cannot read "status" of null (changes)`, is: ErrMissingField},
		// explicit opt-outs
		{ev: insertEvent, src: `(nope ?? 'dflt') == 'dflt'`, want: true},
		{ev: insertEvent, src: `(customer.phone.number ?? 0) == 0`, want: true},
		{ev: insertEvent, src: `(status ?? 'dflt') == 'pending'`, want: true},
		{ev: insertEvent, src: `customer?.phone == nil && data?.nope == nil`, want: true},
		{ev: insertEvent, src: `old?.status == nil`, want: true},
		{ev: insertEvent, src: `customer?.phone.number == nil`, want: true},
		{ev: insertEvent, src: `customer.phone?.number == nil`, err: `field "phone" not in data.customer`},
		{ev: insertEvent, src: `has_field('nope') || has_field('email') && !has_field('nope')`, want: true},
		{ev: truncateEvent, src: `has_field('status')`, want: false},
		{ev: deleteKey, src: `has_field('id') && !has_field('status') && new == nil`, want: true},
	})
}

func TestUnavailable(t *testing.T) {
	const msg = `value of "doc" not available (unchanged TOAST; use REPLICA IDENTITY FULL or enable caching)`
	runConditions(t, Meta{}, []condCase{
		{ev: updateToast, src: `doc.title == 'T'`, err: msg, is: ErrUnavailable},
		{ev: updateToast, src: `new.doc == nil`, err: msg, is: ErrUnavailable},
		{ev: updateToast, src: `(doc ?? 'x') == 'x'`, err: msg, is: ErrUnavailable},
		{ev: updateToast, src: `new?.doc == nil`, err: msg, is: ErrUnavailable},
		{ev: updateToast, src: `has_field('doc')`, want: true},
		{ev: updateToast, src: `field_changed('doc')`, want: false},
		{ev: updateToast, src: `old.doc.title == 'T'`, want: true},
		{ev: updateToast, src: `'doc' in event.unavailable`, want: true},
	})
}

func TestFieldChanged(t *testing.T) {
	noOld := "set REPLICA IDENTITY FULL on public.orders or enable caching"
	runConditions(t, Meta{}, []condCase{
		// full and cached images: compare values (numerically)
		{ev: updateFull, src: `field_changed('status') && field_changed('total')`, want: true},
		{ev: updateFull, src: `field_changed('email')`, want: false},
		{ev: updateFull, src: `field_changed('amount')`, want: false}, // 500.00 → 500.0
		{ev: updateFull, src: `field_changed_from('status', 'pending')`, want: true},
		{ev: updateFull, src: `field_changed_from('status', 'shipped')`, want: false},
		{ev: updateFull, src: `field_changed_to('total', 120) && field_changed_to('total', 120.0)`, want: true},
		{ev: updateFull, src: `field_changed_from('total', numeric('100.00'))`, want: true},
		{ev: updateFull, src: `field_changed_to('email', 'ann@example.com')`, want: false},
		{ev: updateFull, src: `field_changed('nope')`, err: `field "nope" not in new`, is: ErrMissingField},
		{ev: updateCached, src: `field_changed_to('status', 'shipped')`, want: true},
		{ev: updateFull, src: `changes.status.old == 'pending' && changes.status.new == 'shipped'`, want: true},
		{ev: updateFull, src: `'state' in event.changed && len(changes) == 3`, want: true},
		// no old image: only key columns can be answered
		{ev: updateNone, src: `field_changed('status')`, err: noOld, is: ErrNoOldImage},
		{ev: updateNone, src: `field_changed_to('status', 'shipped')`, err: noOld, is: ErrNoOldImage},
		{ev: updateNone, src: `field_changed_from('status', 'pending')`, err: noOld, is: ErrNoOldImage},
		{ev: updateNone, src: `field_changed('id')`, want: false},
		{ev: updateNone, src: `field_changed_to('id', 7)`, want: false},
		{ev: updateKey, src: `field_changed('id') && field_changed_from('id', 6) && field_changed_to('id', 7)`, want: true},
		{ev: updateKey, src: `field_changed('status')`, err: noOld, is: ErrNoOldImage},
		// other operations change nothing
		{ev: insertEvent, src: `field_changed('status')`, want: false},
		{ev: deleteFull, src: `field_changed('status') || field_changed_from('status', 'cancelled')`, want: false},
		{ev: truncateEvent, src: `field_changed('status')`, want: false},
		{ev: messageEvent, src: `field_changed('status')`, want: false},
		// key known only from the Key image (no Relation)
		{ev: func() *decoder.Event { ev := updateNone(); ev.Relation = nil; return ev }, src: `field_changed('id')`, want: false},
		// REPLICA IDENTITY NOTHING: no key at all
		{ev: func() *decoder.Event {
			ev := updateNone()
			ev.Relation, ev.Key = &decoder.Relation{ReplicaIdentity: 'n', Columns: []decoder.Column{{Name: "id"}}}, nil
			return ev
		}, src: `field_changed('id')`, err: noOld, is: ErrNoOldImage},
	})
}

func TestEventNames(t *testing.T) {
	runConditions(t, Meta{}, []condCase{
		{ev: updateFull, src: `event.id == '0/16B3748:3' && event.commit_lsn == '0/16B3748' && event.lsn == '0/16B3700'`, want: true},
		{ev: updateFull, src: `event.xid == 771 && event.schema == 'public' && event.table == 'orders'`, want: true},
		{ev: updateFull, src: `event.op == 'UPDATE' && event.old_kind == 'full' && event_type == 'UPDATE'`, want: true},
		{ev: updateFull, src: `event.commit_time > date('2026-01-01')`, want: true},
		{ev: updateFull, src: `len(event.changed) == 3 && event.unavailable == nil`, want: true},
		{ev: updateFull, src: `event.id == event['id'] && len(keys(event)) == 11`, want: true},
		{ev: deleteFull, src: `event_type == 'DELETE' && data.status == 'cancelled' && old.status == 'cancelled'`, want: true},
		{ev: truncateEvent, src: `event_type == 'TRUNCATE' && data == nil && key == nil`, want: true},
		{ev: insertEvent, src: `entity == 'public.orders'`, want: true},
		{ev: insertEvent, src: `old == nil && changes == nil && message == nil`, want: true},
		{ev: messageEvent, src: `event_type == 'CUSTOM' && event.op == 'MESSAGE'`, want: true},
		{ev: readEvent, src: `event_type == 'READ' && event.op == 'READ' && data.status == new.status && old == nil`, want: true},
		{ev: messageEvent, src: `message.prefix == 'audit' && message.transactional`, want: true},
		{ev: messageEvent, src: `message.content == '{"a": 1}' && fromJSON(message.content).a == 1`, want: true},
		{ev: messageEvent, src: `data == nil && entity == ''`, want: true},
		{ev: messageEvent, src: `status == 'x'`, err: `field "status" not in data (MESSAGE event has no data image)`},
	})
	runConditions(t, Meta{Entity: "Order"}, []condCase{
		{ev: insertEvent, src: `entity == 'Order'`, want: true},
	})
}

func TestConditionNotBool(t *testing.T) {
	runConditions(t, Meta{}, []condCase{
		{ev: insertEvent, src: `status`, err: "condition is string, not bool"},
		{ev: insertEvent, src: `note`, err: "condition is null, not bool"},
		{ev: insertEvent, src: `total ?? false`, err: "condition is number, not bool"},
	})
}

func TestConditionCompileErrors(t *testing.T) {
	f := func(src string, opts Options, line, col int, msg string) {
		t.Helper()
		_, err := CompileCondition(src, opts)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: unexpected error; got %v; want an *Error", src, err)
		}
		if e.Line != line || e.Column != col || !strings.Contains(e.Msg, msg) {
			t.Fatalf("%s: unexpected error; got %d:%d %q; want %d:%d %q", src, e.Line, e.Column, e.Msg, line, col, msg)
		}
	}
	f(`foo(1)`, Options{}, 1, 1, "unknown function foo")
	f(`status == 'x' && bar(1)`, Options{}, 1, 18, "unknown function bar")
	f("status == 'x' &&\n  bar(1)", Options{}, 2, 3, "unknown function bar")
	f(`has_field()`, Options{}, 1, 1, "has_field takes 1 argument(s), not 0")
	f(`field_changed_to('a')`, Options{}, 1, 1, "field_changed_to takes 2 argument(s), not 1")
	f(`has_field(1)`, Options{}, 1, 11, "cannot use int as argument")
	f(`data.status.lower()`, Options{}, 1, 13, "method calls are not supported")
	f(`$env.ev == nil`, Options{}, 1, 1, "$env is not available")
	f(`$path($env, 0, 0, false, 'x') == 1`, Options{}, 1, 1, "unknown function $path")
	f(`status ==`, Options{}, 1, 9, "unexpected token EOF")
	f(`status == 'x`, Options{}, 1, 13, "literal not terminated")
	f(`big > 123456789012345678901234567890`, Options{}, 1, 36, "write numeric('…')")
	f(`big > numeric('12a')`, Options{}, 1, 15, `parse numeric "12a": not a JSON number`)
	f(`numeric('1', '2') == 1`, Options{}, 1, 1, "numeric takes 1 argument, not 2")
	f(`1 + 2`, Options{}, 1, 1, "condition is number, not bool")
	f(`'x'`, Options{}, 1, 1, "condition is string, not bool")
	f(``, Options{}, 1, 1, "empty expression")
	f(strings.Repeat("a", MaxExprLen+1), Options{}, 1, 1, "longer than 4096 bytes")
	f(strings.Repeat("!", maxDepth+2)+"flag", Options{}, 1, maxDepth+2, "nested too deeply")
	f(`x(1)`, Options{Functions: map[string]func(...any) (any, error){"has_field": nil}}, 1, 1, "function has_field is reserved")

	// Long flat chains are fine.
	terms := make([]string, 200)
	for i := range terms {
		terms[i] = fmt.Sprintf("total != %d", i+1000)
	}
	c, err := CompileCondition(strings.Join(terms, " && "), Options{})
	if err != nil {
		t.Fatalf("unexpected error for a long chain: %v", err)
	}
	if ok, err := c.Eval(NewEnv(insertEvent(), Meta{})); !ok || err != nil {
		t.Fatalf("unexpected result for a long chain; got %v, %v; want true", ok, err)
	}
}

func TestEvalErrorPosition(t *testing.T) {
	c, err := CompileCondition("status == 'pending' &&\n  customer.phone == 'x'", Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Eval(NewEnv(insertEvent(), Meta{}))
	var e *Error
	if !errors.As(err, &e) || e.Line != 2 || e.Column != 3 || !errors.Is(err, ErrMissingField) {
		t.Fatalf("unexpected error; got %#v; want 2:3 missing field", err)
	}
	if got, want := e.Error(), `2:3: field "phone" not in data.customer`; got != want {
		t.Fatalf("unexpected message; got %q; want %q", got, want)
	}
}

func TestOptionsFunctions(t *testing.T) {
	opts := Options{Functions: map[string]func(...any) (any, error){
		"double": func(args ...any) (any, error) {
			n, ok := args[0].(int64)
			if !ok {
				return nil, fmt.Errorf("double: not an integer")
			}
			return 2 * n, nil
		},
	}}
	c, err := CompileCondition(`double(total) == 300 && double(id) == 14`, opts)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Eval(NewEnv(insertEvent(), Meta{})); !ok || err != nil {
		t.Fatalf("unexpected result; got %v, %v; want true", ok, err)
	}
	c, _ = CompileCondition(`double(status) == 1`, opts)
	if _, err := c.Eval(NewEnv(insertEvent(), Meta{})); err == nil || !strings.Contains(err.Error(), "double: not an integer") {
		t.Fatalf("unexpected error; got %v; want the function's error", err)
	}
}

func TestEvalNilEnv(t *testing.T) {
	c, _ := CompileCondition(`true`, Options{})
	if _, err := c.Eval(nil); err == nil {
		t.Fatal("unexpected success with a nil Env")
	}
}

// TestConditionColumns: the columns a condition reads by name, with their positions,
// for checking against the table.
func TestConditionColumns(t *testing.T) {
	f := func(src string, want string) {
		t.Helper()
		c, err := CompileCondition(src, Options{})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		var got []string
		for _, col := range c.Columns() {
			got = append(got, fmt.Sprintf("%s@%d:%d", col.Name, col.Line, col.Column))
		}
		if strings.Join(got, " ") != want {
			t.Fatalf("%s: unexpected columns; got %q; want %q", src, strings.Join(got, " "), want)
		}
	}
	f(`status == 'shipped'`, "status@1:1")
	f(`new.total > 100 && old.total <= 100`, "total@1:5 total@1:24")
	f(`data.customer.email != nil`, "customer@1:6")
	f(`new['status'] == 'x'`, "status@1:5")
	f(`field_changed_to('status', 'paid') || has_field('note')`, "status@1:18 note@1:49")
	f(`changes.status.old == 'new'`, "status@1:9")
	f("event.table == 'orders' &&\n  key.id > 3", "id@2:7")
	f(`let s = new.status; s == 'x'`, "status@1:13")
	f(`event_type == 'INSERT' && entity == 'Order'`, "")
	f(`new[event.table] == 1`, "")
}
