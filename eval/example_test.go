package eval_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

func Example() {
	cond, err := eval.CompileCondition(`field_changed_to('status', 'shipped') && total >= 100`, eval.Options{})
	if err != nil {
		panic(err)
	}
	body, err := eval.CompileTemplate(`{"order": {{ id }}, "email": "{{ customer.email }}", "total": {{ total }}, "event": "{{ event.id }}"}`,
		eval.EscapeJSON, eval.Options{})
	if err != nil {
		panic(err)
	}

	names := []string{"id", "status", "total", "customer"}
	ev := &decoder.Event{
		ID:         lsn.Position{Commit: 0x16B3748, Ord: 3},
		CommitTime: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Schema:     "public", Table: "orders", Op: decoder.OpUpdate, OldKind: decoder.OldFull,
		New: &decoder.Row{Names: names, Values: []json.RawMessage{
			json.RawMessage(`42`), json.RawMessage(`"shipped"`), json.RawMessage(`100.00`), json.RawMessage(`{"email": "ann@example.com"}`)}},
		Old: &decoder.Row{Names: names, Values: []json.RawMessage{
			json.RawMessage(`42`), json.RawMessage(`"paid"`), json.RawMessage(`100.00`), json.RawMessage(`{"email": "ann@example.com"}`)}},
	}

	env := eval.NewEnv(ev, eval.Meta{Entity: "Order"})
	ok, err := cond.Eval(env)
	fmt.Println(ok, err)
	b, err := body.RenderJSON(nil, env)
	fmt.Println(string(b), err)

	missing, _ := eval.CompileCondition(`statsu == 'shipped'`, eval.Options{})
	_, err = missing.Eval(env)
	fmt.Println(err)
	// Output:
	// true <nil>
	// {"order": 42, "email": "ann@example.com", "total": 100.00, "event": "0/16B3748:3"} <nil>
	// 1:1: field "statsu" not in data
}
