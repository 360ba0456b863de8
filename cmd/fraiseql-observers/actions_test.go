package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestActionTypesDocumented: every registered action type has its page
// docs/actions/<type>.md, and every page there is a registered type
// (docs/contributing.md: a type is one package, one line, one page).
func TestActionTypesDocumented(t *testing.T) {
	pages, err := filepath.Glob("../../docs/actions/*.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, p := range pages {
		documented = append(documented, strings.TrimSuffix(filepath.Base(p), ".md"))
	}
	registered := actionTypeNames()
	slices.Sort(registered)
	slices.Sort(documented)
	if !slices.Equal(registered, documented) {
		t.Fatalf("unexpected docs/actions pages; got %v; want one per registered type %v", documented, registered)
	}
	for _, typ := range registered {
		b, err := os.ReadFile(filepath.Join("../../docs/actions", typ+".md"))
		if err != nil || !strings.HasPrefix(string(b), "# `"+typ+"` action") {
			t.Fatalf("docs/actions/%s.md does not start with its title \"# `%s` action\" (%v)", typ, typ, err)
		}
	}
}
