package configs

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/goccy/go-yaml/lexer"
)

// allocDuring returns the bytes allocated by f.
func allocDuring(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestShapeBombs: documents that make the YAML parser's work explode (deep
// nesting, wide mappings, floods of tokens) are refused before it runs, at
// file:line:column, with a bounded allocation. Before the pre-scan, 20,000 nested
// "[" (40 KB) made Parse allocate about a gigabyte; 100,000 took 47 s and 15 GB.
func TestShapeBombs(t *testing.T) {
	var stair, keys strings.Builder
	for i := 0; i < 100; i++ {
		stair.WriteString(strings.Repeat(" ", i) + "a:\n")
	}
	for i := 0; i < 4100; i++ {
		fmt.Fprintf(&keys, "  k%d: v\n", i)
	}
	var wide strings.Builder
	for j := 0; j < 5; j++ {
		fmt.Fprintf(&wide, "m%d:\n", j)
		for i := 0; i < 1900; i++ {
			fmt.Fprintf(&wide, "  k%d: v\n", i)
		}
	}
	deep := "nest more than 64 levels"
	cases := []struct {
		name, src, pos, frag string
	}{
		{"nested [", src + "x: " + strings.Repeat("[", 20000) + "\n", "c.yaml:3:67", deep},
		{"nested {", src + "x: " + strings.Repeat("{a: ", 20000) + "\n", "c.yaml:3:256", deep},
		{"nested [ across lines", src + "x:\n" + strings.Repeat("  [\n", 20000), "c.yaml:67:3", deep},
		{"nested - on one line", strings.Repeat("- ", 20000) + "x\n", "c.yaml:1:129", deep},
		{"nested ? keys", strings.Repeat("? ", 20000) + "x\n", "c.yaml:1:129", deep},
		{"indentation staircase", stair.String(), "c.yaml:65:65", deep},
		{"keys and lists inside each other", strings.Repeat("- a:\n", 1) + strings.Repeat("    - b:\n", 1) +
			func() string {
				var b strings.Builder
				for i := 2; i < 200; i++ {
					b.WriteString(strings.Repeat("  ", i) + "- c:\n")
				}
				return b.String()
			}(), "c.yaml:", deep},
		{"one wide mapping", "m:\n" + keys.String(), "c.yaml:4001:3", "too many keys"},
		{"several wide mappings", wide.String(), "c.yaml:", "too many keys"},
		{"a long flow list", src + "x: [" + strings.Repeat("1,", 60000) + "1]\n", "c.yaml:3:", "more than 50000 keys, list entries and comments"},
		{"a long block list", src + "x:\n" + strings.Repeat("- 1\n", 60000), "c.yaml:50001:1", "more than 50000"},
		{"a flood of comments", strings.Repeat("#\n", 60000), "c.yaml:50001:1", "more than 50000"},
		{"a flood of aliases", "a: &x 1\nb: [" + strings.Repeat("*x, ", 60000) + "*x]\n", "c.yaml:2:", "more than 50000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var errs []*Error
			alloc := allocDuring(func() { errs = parseErrors(t, c.src, nil) })
			t.Logf("%s: Parse allocated %d KB", c.name, alloc>>10)
			if len(errs) != 1 || !strings.HasPrefix(errs[0].Pos.String(), c.pos) || !strings.Contains(errs[0].Msg, c.frag) {
				t.Fatalf("unexpected errors %v; want one at %s containing %q", errs, c.pos, c.frag)
			}
			// The document itself is at most 250 KB; Parse keeps a few copies of it.
			if limit := uint64(16 << 20); alloc > limit {
				t.Fatalf("Parse allocated %d MB for a %d KB document; want at most %d MB", alloc>>20, len(c.src)>>10, limit>>20)
			}
		})
	}
}

// TestShapeTokens: the check on the scanner's tokens, which runs after the
// pre-scan and before the parser, applies the same limits on its own.
func TestShapeTokens(t *testing.T) {
	f := func(doc, frag string, line, col int) {
		t.Helper()
		err := checkTokens(lexer.Tokenize(doc))
		if err == nil || !strings.Contains(err.msg, frag) || err.line != line || err.col != col {
			t.Fatalf("unexpected token check of %.40q; got %+v; want %q at %d:%d", doc, err, frag, line, col)
		}
	}
	f("x: "+strings.Repeat("[", 100)+strings.Repeat("]", 100)+"\n", "nest more than 64", 1, 67)
	f(strings.Repeat("- ", 100)+"x\n", "nest more than 64", 1, 129)
	f("x:\n"+strings.Repeat("  - y\n", 50001), "more than 50000", 50001, 3)
	var b strings.Builder
	for i := 0; i < 4001; i++ {
		fmt.Fprintf(&b, "k%d: v\n", i)
	}
	f(b.String(), "too many keys", 4001, 1)
	for _, ok := range []string{"a: [[1], {b: [2]}]\n", "- a: 1\n  b: [1, 2]\n- c\n"} {
		if err := checkTokens(lexer.Tokenize(ok)); err != nil {
			t.Fatalf("unexpected token check error for %q: %v", ok, err.msg)
		}
	}
}

// TestShapeLegitimate: brackets and indentation that are text (quoted strings,
// comments, block scalars, plain scalars) never count, however deep they look.
func TestShapeLegitimate(t *testing.T) {
	deepJSON := strings.Repeat(`{"a": [`, 80) + "{{ new.id }}" + strings.Repeat("]}", 80)
	var body strings.Builder
	for i := 0; i < 80; i++ {
		body.WriteString("          " + strings.Repeat(" ", i) + "{\"level\": [\n")
	}
	docs := map[string]string{
		"double-quoted":            obs + `        body_template: "` + strings.ReplaceAll(deepJSON, `"`, `\"`) + "\"\n",
		"single-quoted":            obs + `        body_template: '` + deepJSON + "'\n",
		"single-quoted over lines": obs + "        body_template: '" + strings.Repeat("[[\n          ", 60) + "x'\n",
		"literal block":            obs + "        body_template: |\n          " + deepJSON + "\n" + body.String() + "    condition: status == 'a'\n",
		"folded block":             obs + "        body_template: >-\n" + body.String() + "\n\n" + body.String(),
		"comments":                 obs + "# " + strings.Repeat("[", 200) + "\n        body_template: x # " + strings.Repeat("{", 200) + "\n",
		"plain": obs + "    condition: status in ['a', \"b\"] && " + strings.Repeat("[", 100) + "\n" +
			"      && " + strings.Repeat("{", 100) + " == 1\n",
		"apostrophes": obs + "        body_template: don't [ stop ' [[[[\n    condition: it's [ fine\n",
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			if se := prescanShape([]byte(doc)); se != nil {
				t.Fatalf("unexpected pre-scan error %s at %v\n%s", se.msg, se.pos("c.yaml", []byte(doc)), doc)
			}
			if se := checkTokens(lexer.Tokenize(doc)); se != nil {
				t.Fatalf("unexpected token check error %s at %d:%d", se.msg, se.line, se.col)
			}
		})
	}
	// The shipped configurations load.
	for _, path := range []string{"examples/demo.yaml", "examples/production.yaml", "testdata/full.yaml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if se := prescanShape(data); se != nil {
			t.Fatalf("%s: unexpected pre-scan error %s", path, se.msg)
		}
	}
	// A large but real configuration: 1,000 observers with two actions each.
	var big strings.Builder
	big.WriteString(src + "observers:\n")
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&big, "  o%d:\n    entity: public.t%d\n    condition: \"status in ['a', 'b']\"\n    actions:\n"+
			"      - {type: webhook, url: 'https://example.com/x', headers: {X-A: b}}\n      - type: file\n        path: /tmp/o%d\n", i, i, i)
	}
	cfg, _ := mustParse(t, big.String(), nil)
	if len(cfg.Observers) != 1000 {
		t.Fatalf("unexpected observers %d", len(cfg.Observers))
	}
}
