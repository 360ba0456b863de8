package eval

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] { // fuzzing needs no server
		if strings.HasPrefix(a, "-test.fuzz=") || strings.HasPrefix(a, "-test.fuzzworker") {
			os.Exit(m.Run())
		}
	}
	pgtest.Main(m, pgtest.Options{})
}

// liveEvents runs sql in a fresh database and returns the events decoded from the
// real pgoutput stream it produced.
func liveEvents(t *testing.T, setup, sql string) []*decoder.Event {
	t.Helper()
	db := pgtest.NewDB(t)
	db.Exec(setup)
	db.Exec(`CREATE PUBLICATION pub FOR ALL TABLES`)
	db.CreateSlot("s")
	db.Exec(sql)
	ctx := context.Background()
	conn := db.Conn()
	rows, err := conn.Query(ctx, `SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes('s', NULL, NULL,
		'proto_version', '1', 'publication_names', 'pub', 'messages', 'true')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	dec := decoder.New(decoder.Options{})
	var out []*decoder.Event
	for rows.Next() {
		var at string
		var data []byte
		if err := rows.Scan(&at, &data); err != nil {
			t.Fatal(err)
		}
		l, _ := lsn.Parse(at)
		if out, _, err = dec.Decode(l, data, out); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConditionsOnRealEvents evaluates the condition language against events decoded
// from a real PostgreSQL stream: every helper, dotted paths into jsonb, numeric
// equality across types, missing fields (an error, not false) and the original's
// example conditions.
func TestConditionsOnRealEvents(t *testing.T) {
	evs := liveEvents(t, `
CREATE TABLE orders (id bigint PRIMARY KEY, status text NOT NULL, total numeric(12,2), amount int,
                     ratio float8, data jsonb, email text);
CREATE TABLE invoices (id int PRIMARY KEY, state text, amount numeric);
ALTER TABLE invoices REPLICA IDENTITY FULL;`, `
INSERT INTO orders VALUES (1, 'pending', 100.00, 100, 100, '{"customer": {"email": "ada@example.com", "tier": 2}, "items": [10, 20]}', 'ada@example.com');
UPDATE orders SET status = 'shipped' WHERE id = 1;
DELETE FROM orders WHERE id = 1;
INSERT INTO invoices VALUES (7, 'open', 499.99);
UPDATE invoices SET state = 'paid', amount = 500 WHERE id = 7;
SELECT pg_logical_emit_message(true, 'app', 'hello');`)
	if len(evs) != 6 {
		t.Fatalf("unexpected number of events %d", len(evs))
	}
	insert, update, del, invIns, invUpd, msg := evs[0], evs[1], evs[2], evs[3], evs[4], evs[5]
	type tc struct {
		ev   *decoder.Event
		cond string
		want bool
		err  error // errors.Is target; nil means no error expected
	}
	cases := []tc{
		// The original's examples.
		{update, `status == 'shipped'`, true, nil},
		{insert, `total > 50 && status == 'pending'`, true, nil},
		{invUpd, `field_changed_to('state', 'paid') && amount >= 500`, true, nil},
		{insert, `has_field('email') && !field_changed('email')`, true, nil},
		{update, `data.status == 'shipped'`, true, nil},
		{insert, `event_type == 'INSERT'`, true, nil},
		// Numeric equality across int, numeric and float columns and literals.
		{insert, `total == 100`, true, nil},
		{insert, `total == 100.00 && amount == 100.0 && ratio == 100`, true, nil},
		{insert, `total == amount && amount == ratio`, true, nil},
		{insert, `total != 100.01`, true, nil},
		{invIns, `amount == 499.99 && amount < 500`, true, nil},
		// Dotted paths into jsonb, arrays, event metadata.
		{insert, `data.data.customer.email == 'ada@example.com' && data.data.customer.tier == 2`, true, nil},
		{insert, `new.data.items[1] == 20 && len(new.data.items) == 2`, true, nil},
		{insert, `event.table == 'orders' && event.schema == 'public' && event.op == 'INSERT'`, true, nil},
		{insert, `event.id == '` + insert.ID.String() + `'`, true, nil},
		{update, `key.id == 1`, true, nil},
		{del, `event_type == 'DELETE' && data.id == 1`, true, nil},
		// Helpers.
		{invUpd, `field_changed('state') && field_changed('amount')`, true, nil},
		{invUpd, `field_changed_from('state', 'open') && field_changed_from('amount', 499.99)`, true, nil},
		{invUpd, `field_changed_to('amount', 500.00)`, true, nil},
		{invUpd, `changes.state.old == 'open' && changes.state.new == 'paid'`, true, nil},
		{invIns, `field_changed('state')`, false, nil}, // INSERT: nothing changed
		{update, `has_field('nope')`, false, nil},
		{update, `field_changed('id')`, false, nil}, // a key column without an old key: unchanged
		// Errors, never a silent false.
		{update, `field_changed('status')`, false, ErrNoOldImage}, // REPLICA IDENTITY DEFAULT, no cache
		{insert, `phone == '555'`, false, ErrMissingField},
		{insert, `data.data.customer.phone == '555'`, false, ErrMissingField},
		{del, `old.status == 'shipped'`, false, ErrMissingField}, // DEFAULT: the old image has only the key
		// Messages.
		{msg, `event_type == 'CUSTOM' && message.prefix == 'app' && message.content == 'hello'`, true, nil},
	}
	for _, c := range cases {
		cond, err := CompileCondition(c.cond, Options{})
		if err != nil {
			t.Fatalf("compile %q: %v", c.cond, err)
		}
		got, err := cond.Eval(NewEnv(c.ev, Meta{}))
		switch {
		case c.err != nil && !errors.Is(err, c.err):
			t.Fatalf("%q on %s: unexpected error; got %v; want %v", c.cond, c.ev.Op, err, c.err)
		case c.err == nil && err != nil:
			t.Fatalf("%q on %s: unexpected error %v", c.cond, c.ev.Op, err)
		case c.err == nil && got != c.want:
			t.Fatalf("%q on %s: got %v; want %v", c.cond, c.ev.Op, got, c.want)
		}
	}
}
