package eval

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// bigEvent is an order with a 1 MB text column `big` and a NULL column `other`.
func bigEvent() *decoder.Event {
	return event(decoder.OpInsert, orderRow("big", strconv.Quote(strings.Repeat("x", 1<<20)), "other", "null", "ssn", `"SSN-123-45-6789"`), nil, decoder.OldNone)
}

// TestEvaluationBudgets: every way for one expression to allocate without bound or to
// run for ever ends as that evaluation's ErrBudget error, under a small budget.
func TestEvaluationBudgets(t *testing.T) {
	small := Budget{MaxSteps: 100_000, Timeout: 2 * time.Second, MaxMemoryBytes: 8 << 20, MaxRenderedBytes: 4 << 20}
	conds := []string{
		`len(repeat(big, 1000000)) > 0`,
		`len(join(map(1..300, big))) > 0`,
		`len(join(map(1..300, big), ',')) > 0`,
		`len(toJSON(map(1..300, new))) > 0`,
		`len(string(map(1..300, big))) > 0`,
		`len(replace(big, 'x', big)) > 0`,
		`len(replace(big, '', 'yyyyyyyyyy')) > 0`,
		`let a = big + big; let b = a + a; let c = b + b; let d = c + c; len(d + d) > 0`,
		`let a = concat(1..1000, 1..1000); let b = concat(a, a); let c = concat(b, b); let d = concat(c, c); let e = concat(d, d); let f = concat(e, e); let g = concat(f, f); let h = concat(g, g); len(concat(h, h)) > 0`,
		`let a = 1..999; all(a, {all(a, {all(a, {all(a, {other == nil})})})})`,
		`let a = 1..999; any(a, {any(a, {any(a, {any(a, {# < 0})})})})`,
		`len(1..100000000) > 0`,
		`reduce(1..10000000, #acc + 1, 0) > 0`,
		`len(uniq(1..100000)) > 0`,
	}
	for _, src := range conds {
		c, err := CompileCondition(src, Options{Budget: small})
		if err != nil {
			t.Fatalf("%s: compile: %v", src, err)
		}
		ok, err := c.Eval(NewEnv(bigEvent(), Meta{}))
		if !errors.Is(err, ErrBudget) {
			t.Errorf("%s: got %v, %v; want an ErrBudget error", src, ok, err)
		}
	}
	tmpls := []string{
		`{{ map(1..300, big) }}`,
		`{{ big }}{{ big }}{{ big }}{{ big }}{{ big }}`,
		`{{ repeat(big, 5) }}`,
	}
	for _, src := range tmpls {
		for _, esc := range []Escape{EscapeNone, EscapeJSON} {
			tm, err := CompileTemplate(src, esc, Options{Budget: small})
			if err != nil {
				t.Fatalf("%s: compile: %v", src, err)
			}
			out, err := tm.Render(NewEnv(bigEvent(), Meta{}))
			if !errors.Is(err, ErrBudget) || len(out) != 0 {
				t.Errorf("%s (%v): got %d bytes, %v; want an ErrBudget error", src, esc, len(out), err)
			}
		}
	}
	// Within the budget, the same functions work.
	for _, src := range []string{`uniq([1, 2, 1])[1] == 2`, `len(repeat(ssn, 3)) == 45`, `len(join(map(1..3, ssn), ',')) == 47`, `let a = 1..99; all(a, {all(a, {# > 0})})`} {
		c, err := CompileCondition(src, Options{Budget: small})
		if err != nil {
			t.Fatalf("%s: compile: %v", src, err)
		}
		if ok, err := c.Eval(NewEnv(bigEvent(), Meta{})); !ok || err != nil {
			t.Errorf("%s: got %v, %v; want true", src, ok, err)
		}
	}
	// The default budget ends a runaway evaluation too.
	c, err := CompileCondition(`let a = 1..999; all(a, {all(a, {all(a, {all(a, {other == 1 || true})})})})`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Eval(NewEnv(bigEvent(), Meta{})); !errors.Is(err, ErrBudget) {
		t.Errorf("default budget: got %v; want an ErrBudget error", err)
	}
}

// TestEvaluationErrorsAreRedacted: an expr built-in's error quoting a row value keeps
// it in Error() (for the DLQ) and withholds it from Redacted() (logs, debug).
func TestEvaluationErrorsAreRedacted(t *testing.T) {
	for _, src := range []string{`int(ssn) > 5`, `repeat(ssn, -1) == ''`, `float(ssn) > 1`} {
		c, err := CompileCondition(src, Options{})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		_, err = c.Eval(NewEnv(bigEvent(), Meta{}))
		if err == nil {
			t.Fatalf("%s: no error", src)
		}
		if r := Redact(err); strings.Contains(r, "SSN") || strings.Contains(r, "123") || strings.Contains(r, "-1") {
			t.Errorf("%s: redacted error %q quotes the value", src, r)
		}
	}
	// Errors of the package's own functions name fields and types: kept whole.
	c, _ := CompileCondition(`other > 5`, Options{})
	_, err := c.Eval(NewEnv(bigEvent(), Meta{}))
	if err == nil || Redact(err) != err.Error() {
		t.Errorf("other > 5: got %v, redacted %q; want the same text", err, Redact(err))
	}
}
