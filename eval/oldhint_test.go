package eval

import (
	"strings"
	"testing"
)

// TestOldValueHintWithRowCache: with the row cache on, a missing old value is
// explained by what the cache holds (rows changed since start; a replay starts it
// empty), never by a suggestion to enable caching.
func TestOldValueHintWithRowCache(t *testing.T) {
	const hint = "set REPLICA IDENTITY FULL on public.orders: the row cache had no image of this row"
	runConditions(t, Meta{RowCache: true}, []condCase{
		{ev: updateNone, src: `field_changed_to('status', 'shipped')`, err: hint, is: ErrNoOldImage},
		{ev: updateNone, src: `old.status == 'x'`, err: hint, is: ErrMissingField},
		{ev: deleteKey, src: `status == 'x'`, err: hint, is: ErrMissingField},
	})
	for _, src := range []string{`field_changed_to('status', 'shipped')`, `old.status == 'x'`} {
		cond, err := CompileCondition(src, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cond.Eval(NewEnv(updateNone(), Meta{RowCache: true})); err == nil || strings.Contains(err.Error(), "enable caching") {
			t.Fatalf("%s: unexpected error with the row cache on; got %v; want no advice to enable caching", src, err)
		}
	}
}
