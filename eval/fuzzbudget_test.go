package eval

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/decoder"
)

// exprGen writes an expression of the condition language from fuzz bytes: columns,
// literals, ranges, operators, let, built-ins that allocate (repeat, replace, join,
// concat, toJSON, ...) and nested predicates, the shapes a runaway evaluation takes.
type exprGen struct {
	b []byte
	i int
}

func (g *exprGen) next() int {
	if g.i >= len(g.b) {
		return 0
	}
	g.i++
	return int(g.b[g.i-1])
}

var (
	genAtoms  = []string{"id", "status", "total", "big", "other", "items", "customer", "new", "'x'", "'ab'", "1", "2.5", "nil", "true", "#", "data"}
	genUnary  = []string{"len", "upper", "lower", "string", "toJSON", "trim", "reverse", "sort", "uniq", "flatten", "keys", "values", "int", "float", "abs", "first", "last", "fromJSON", "type"}
	genBinary = []string{"+", "-", "*", "==", "!=", "<", ">", "&&", "||", "??", "in", "..", "/", "%"}
	genPreds  = []string{"all", "any", "none", "map", "filter", "count", "find", "sortBy", "groupBy"}
)

func (g *exprGen) expr(depth int) string {
	if depth > 6 {
		return genAtoms[g.next()%len(genAtoms)]
	}
	switch g.next() % 14 {
	case 0, 1:
		return genAtoms[g.next()%len(genAtoms)]
	case 2:
		return fmt.Sprintf("%s(%s)", genUnary[g.next()%len(genUnary)], g.expr(depth+1))
	case 3:
		return fmt.Sprintf("(%s %s %s)", g.expr(depth+1), genBinary[g.next()%len(genBinary)], g.expr(depth+1))
	case 4:
		return fmt.Sprintf("%s(%s, {%s})", genPreds[g.next()%len(genPreds)], g.expr(depth+1), g.expr(depth+1))
	case 5:
		return fmt.Sprintf("1..%d", 1<<(g.next()%24))
	case 6:
		return fmt.Sprintf("repeat(%s, %d)", g.expr(depth+1), 1<<(g.next()%24))
	case 7:
		return fmt.Sprintf("replace(%s, %s, %s)", g.expr(depth+1), g.expr(depth+1), g.expr(depth+1))
	case 8:
		return fmt.Sprintf("join(%s, %s)", g.expr(depth+1), g.expr(depth+1))
	case 9:
		return fmt.Sprintf("concat(%s, %s)", g.expr(depth+1), g.expr(depth+1))
	case 10:
		v := "v" + strconv.Itoa(depth)
		return fmt.Sprintf("(let %s = %s; %s)", v, g.expr(depth+1), strings.ReplaceAll(g.expr(depth+1), "#", v))
	case 11:
		return fmt.Sprintf("reduce(%s, #acc + %s, %s)", g.expr(depth+1), g.expr(depth+1), g.expr(depth+1))
	case 12:
		return fmt.Sprintf("%s[%s]", g.expr(depth+1), g.expr(depth+1))
	}
	return fmt.Sprintf("[%s, %s]", g.expr(depth+1), g.expr(depth+1))
}

// fuzzBudget is the small budget FuzzBudget evaluates under.
var fuzzBudget = Budget{MaxSteps: 20_000, Timeout: time.Second, MaxMemoryBytes: 1 << 20, MaxRenderedBytes: 256 << 10}

// fuzzAllocLimit bounds what one evaluation may allocate under fuzzBudget: the budget
// counts strings and lists, not the VM's and the decoder's own small allocations, so
// the bound has room for those, far below what an escape allocates (repeat of a
// 64 kB value a million times, nested ranges).
const fuzzAllocLimit = 64 << 20

// FuzzBudget evaluates conditions and templates generated from the grammar over
// generated rows under a small budget: nothing panics, a failure is an error (a
// budget breach an ErrBudget error), and no evaluation allocates beyond its budget.
func FuzzBudget(f *testing.F) {
	f.Add([]byte{4, 0, 5, 23, 4, 5, 23, 0, 14}, "SSN-123", uint16(1000))
	f.Add([]byte{6, 0, 3, 23, 8, 4, 5, 20, 0, 3}, "x", uint16(65535))
	f.Add([]byte{10, 5, 20, 4, 0, 15, 4, 0, 15, 4, 0, 15, 0, 14}, "", uint16(0))
	f.Add([]byte{3, 3, 0, 3, 3, 0, 3, 0, 3}, "{\"a\":[1,2]}", uint16(300))
	f.Fuzz(func(t *testing.T, prog []byte, val string, bigLen uint16) {
		g := &exprGen{b: prog}
		src := g.expr(0)
		ev := event(decoder.OpInsert, orderRow(
			"big", strconv.Quote(strings.Repeat("y", int(bigLen))),
			"other", strconv.Quote(val),
			"items", fmt.Sprintf(`[%s, {"qty": 1}, [1, 2]]`, strconv.Quote(val)),
		), nil, decoder.OldNone)
		check := func(kind string, run func() error) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := run()
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > fuzzAllocLimit {
				t.Fatalf("%s %q allocated %d bytes under a %d-byte budget (err %v)", kind, src, n, fuzzBudget.MaxMemoryBytes, err)
			}
			var e *Error
			if err != nil && !errors.As(err, &e) {
				t.Fatalf("%s %q: error %v is not an *Error", kind, src, err)
			}
			if err != nil && strings.Contains(e.Redacted(), "SSN") && !strings.Contains(src, "SSN") {
				t.Fatalf("%s %q: redacted error quotes a value: %s", kind, src, e.Redacted())
			}
		}
		if c, err := CompileCondition(src, Options{Budget: fuzzBudget}); err == nil {
			check("condition", func() error {
				ok, err := c.Eval(NewEnv(ev, Meta{}))
				if ok && err != nil {
					t.Fatalf("%q: true with an error", src)
				}
				return err
			})
		}
		for _, esc := range []Escape{EscapeNone, EscapeJSON} {
			tp, err := CompileTemplate("{{ "+src+" }}", esc, Options{Budget: fuzzBudget})
			if err != nil {
				continue
			}
			check("template", func() error {
				out, err := tp.Render(NewEnv(ev, Meta{}))
				if int64(len(out)) > fuzzBudget.MaxRenderedBytes {
					t.Fatalf("%q rendered %d bytes over max_rendered_bytes", src, len(out))
				}
				return err
			})
		}
	})
}
