package configs

import (
	"slices"

	"github.com/goccy/go-yaml/ast"
)

// rawMapping is a YAML mapping the loader keeps undecoded for the wiring code
// (an action's sink keys, a section such as transport): it finds a key's
// position and the environment variables the mapping refers to that are unset.
type rawMapping struct {
	node *ast.MappingNode
	doc  *document
}

// loaded reports whether the mapping came from a loaded configuration.
func (m rawMapping) loaded() bool { return m.node != nil && m.doc != nil }

// lookupKey returns key's entry; path names the mapping in messages.
func (m rawMapping) lookupKey(key, path string) (entry, bool) {
	if !m.loaded() {
		return entry{}, false
	}
	d := newYAMLDecoder(m.doc, &Errors{})
	d.reportDuplicates = false
	for _, e := range d.entries(m.node, path) {
		if e.key == key {
			return e, true
		}
	}
	return entry{}, false
}

// keyPos returns where the value of key is written, or otherwise when the key is
// absent.
func (m rawMapping) keyPos(key, path string, otherwise Pos) Pos {
	if e, ok := m.lookupKey(key, path); ok {
		return m.doc.posOf(e.value)
	}
	return otherwise
}

// unset returns the mapping's references to environment variables that are not
// set (Options.DeferEnv), in file order, with keys relative to the mapping; nil
// after a strict load, where decoding reports them as errors.
func (m rawMapping) unset() []Unset {
	if !m.loaded() || !m.doc.deferEnv {
		return nil
	}
	d := newYAMLDecoder(m.doc, &Errors{})
	d.reportDuplicates = false
	d.scanUnset(m.node, "")
	sortByPos(d.unset, func(u Unset) Pos { return u.Pos })
	return slices.CompactFunc(d.unset, func(a, b Unset) bool { return a.Pos == b.Pos })
}
