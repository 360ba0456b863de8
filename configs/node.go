package configs

import (
	"errors"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// Limits on what one document may make the decoder do. Aliases can make a small
// file describe a huge tree ("billion laughs"); these bound the work.
const (
	maxDepth  = 64
	maxVisits = 250_000
)

// document is a parsed configuration shared by the loader and by every Action
// decoded from it later.
type document struct {
	file   string
	lookup func(string) (string, bool)
	// deferEnv turns unset variables from errors into Unset entries (Options.DeferEnv).
	deferEnv bool
	anchors  map[string][]*ast.AnchorNode // per name, in document order
	lines    []string                     // the source, for textPos
}

// kind classifies a resolved node.
type kind uint8

const (
	kindNull kind = iota
	kindString
	kindInt
	kindFloat
	kindBool
	kindMapping
	kindSequence
)

var kindNames = [...]string{"null", "a string", "an integer", "a number", "a boolean", "a mapping", "a list"}

func (k kind) String() string { return kindNames[k] }

// value is a resolved node: anchors, aliases and the !!str tag are gone, and a
// string has had its ${VAR} references expanded.
type value struct {
	node ast.Node
	kind kind
	pos  Pos
	// str is the scalar's text: the expanded string, or the token as written.
	str string
	// raw is a string before expansion; expanded reports whether it had ${...}.
	raw      string
	expanded bool
}

// show returns the value for an error message. A value that came from the
// environment is shown as written ("${SLOT}"), never expanded.
func (v value) show() string {
	s := v.str
	if v.expanded {
		s = v.raw
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	q := strconv.Quote(s)
	if v.expanded {
		return "the value of " + q
	}
	return q
}

// mapping returns the mapping node of a kindMapping value.
func (v value) mapping() *ast.MappingNode {
	m, _ := v.node.(*ast.MappingNode)
	return m
}

// sequence returns the elements of a kindSequence value.
func (v value) sequence() []ast.Node {
	if s, ok := v.node.(*ast.SequenceNode); ok {
		return s.Values
	}
	return nil
}

// posOf returns where n starts. A mapping starts at its first key (its token is
// the first ":"), so errors about a whole mapping point at a line an editor shows.
func (doc *document) posOf(n ast.Node) Pos {
	switch m := n.(type) {
	case *ast.MappingNode:
		if len(m.Values) > 0 && m.Values[0].Key != nil && !m.IsFlowStyle {
			return doc.posOf(m.Values[0].Key)
		}
	case *ast.MappingValueNode:
		if m.Key != nil {
			return doc.posOf(m.Key)
		}
	case *ast.MappingKeyNode:
		if m.Start != nil {
			return doc.tokenPos(m.Start)
		}
	}
	if n == nil {
		return Pos{File: doc.file, Line: 1, Column: 1}
	}
	return doc.tokenPos(n.GetToken())
}

// textPos returns where the text of scalar n starts: after the quote of a quoted
// scalar, on the first content line of a block scalar (| or >), else where n is.
// Expression positions are counted from there.
func (doc *document) textPos(n ast.Node) Pos {
	pos := doc.posOf(n)
	switch n := n.(type) {
	case *ast.StringNode:
		if tk := n.GetToken(); tk != nil && (tk.Type == token.DoubleQuoteType || tk.Type == token.SingleQuoteType) {
			pos.Column++
		}
	case *ast.LiteralNode:
		for i := pos.Line; i < len(doc.lines); i++ { // lines[i] is line i+1
			line := strings.TrimRight(doc.lines[i], "\r")
			if text := strings.TrimLeft(line, " "); text != "" {
				return Pos{File: doc.file, Line: i + 1, Column: len(line) - len(text) + 1}
			}
		}
	}
	return pos
}

func (doc *document) tokenPos(tk *token.Token) Pos {
	if tk == nil || tk.Position == nil || tk.Position.Line < 1 {
		return Pos{File: doc.file, Line: 1, Column: 1}
	}
	return Pos{File: doc.file, Line: tk.Position.Line, Column: max(tk.Position.Column, 1)}
}

// collectAnchors records every anchor of the tree rooted at n, in document order.
func (doc *document) collectAnchors(n ast.Node, depth int) {
	if n == nil || depth > maxDepth {
		return
	}
	switch n := n.(type) {
	case *ast.AnchorNode:
		if n.Name != nil && n.Name.GetToken() != nil && n.GetToken() != nil && n.GetToken().Position != nil {
			name := n.Name.GetToken().Value
			doc.anchors[name] = append(doc.anchors[name], n)
		}
		doc.collectAnchors(n.Value, depth+1)
	case *ast.MappingNode:
		for _, mv := range n.Values {
			doc.collectAnchors(mv, depth+1)
		}
	case *ast.MappingValueNode:
		doc.collectAnchors(n.Key, depth+1)
		doc.collectAnchors(n.Value, depth+1)
	case *ast.MappingKeyNode:
		doc.collectAnchors(n.Value, depth+1)
	case *ast.SequenceNode:
		for _, v := range n.Values {
			doc.collectAnchors(v, depth+1)
		}
	case *ast.TagNode:
		doc.collectAnchors(n.Value, depth+1)
	}
}

// anchorFor returns the node an alias refers to: the value of the last anchor
// of that name defined before the alias.
func (doc *document) anchorFor(alias *ast.AliasNode) (ast.Node, string) {
	if alias.Value == nil || alias.Value.GetToken() == nil || alias.GetToken() == nil || alias.GetToken().Position == nil {
		return nil, ""
	}
	name := alias.Value.GetToken().Value
	at := alias.GetToken().Position.Offset
	var found ast.Node
	for _, a := range doc.anchors[name] {
		if a.GetToken().Position.Offset < at {
			found = a.Value
		}
	}
	return found, name
}

// resolve follows anchors, aliases and tags down to a scalar, mapping or
// sequence node. forceString is set by the !!str tag.
func (d *yamlDecoder) resolve(n ast.Node, path string) (_ ast.Node, forceString, ok bool) {
	for range maxDepth {
		switch t := n.(type) {
		case *ast.AnchorNode:
			n = t.Value
		case *ast.AliasNode:
			target, name := d.doc.anchorFor(t)
			if target == nil {
				d.errorf(d.doc.posOf(t), path, "alias *%s refers to no anchor &%s defined before it", name, name)
				return nil, false, false
			}
			n = target
		case *ast.TagNode:
			if t.Start == nil || t.Start.Value != "!!str" {
				tag := ""
				if t.Start != nil {
					tag = t.Start.Value
				}
				d.errorf(d.doc.posOf(t), path, "YAML tag %s is not supported (only !!str is)", tag)
				return nil, false, false
			}
			n, forceString = t.Value, true
		default:
			return n, forceString, true
		}
	}
	d.errorf(d.doc.posOf(n), path, "anchors, aliases and tags nest too deeply")
	return nil, false, false
}

// value resolves n and classifies it, expanding ${VAR} in strings. It reports
// its errors and returns ok=false after one.
func (d *yamlDecoder) value(n ast.Node, path string) (value, bool) {
	r, forceString, ok := d.resolve(n, path)
	if !ok {
		return value{}, false
	}
	v := value{node: r, pos: d.doc.posOf(r)}
	if !d.visit(v.pos, path) {
		return value{}, false
	}
	if r == nil {
		return v, true // an empty document or value: null
	}
	switch t := r.(type) {
	case *ast.NullNode:
		v.kind = kindNull
		if forceString {
			v.kind = kindString
		}
	case *ast.StringNode:
		v.kind, v.str = kindString, t.Value
	case *ast.LiteralNode:
		v.kind = kindString
		if t.Value != nil {
			v.str = t.Value.Value
		}
	case *ast.IntegerNode:
		v.kind, v.str = kindInt, t.GetToken().Value
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		v.kind, v.str = kindFloat, t.GetToken().Value
	case *ast.BoolNode:
		v.kind, v.str = kindBool, t.GetToken().Value
	case *ast.MappingNode:
		v.kind = kindMapping
	case *ast.SequenceNode:
		v.kind = kindSequence
	default:
		d.errorf(v.pos, path, "unsupported YAML construct (%s)", r.Type())
		return value{}, false
	}
	if forceString && v.kind != kindString {
		if v.kind == kindMapping || v.kind == kindSequence {
			d.errorf(v.pos, path, "!!str applies to scalars, not to %s", v.kind)
			return value{}, false
		}
		v.kind = kindString
	}
	if v.kind == kindString && !d.literal {
		v.raw = v.str
		s, expanded, err := expandEnv(v.str, d.doc.lookup)
		var unset *unsetVarError
		if errors.As(err, &unset) && d.doc.deferEnv {
			d.unset = append(d.unset, Unset{Pos: v.pos, Key: path, Var: unset.name, ref: true})
			return value{}, false
		}
		if err != nil {
			d.errorf(v.pos, path, "%v", err)
			return value{}, false
		}
		v.str, v.expanded = s, expanded
	}
	return v, true
}

// entry is one key of a mapping.
type entry struct {
	key    string
	keyPos Pos
	value  ast.Node // unresolved
}

// entries returns the keys of m in order, with merge keys ("<<: *base")
// applied: a merged key never overrides one written in m itself. Duplicate
// keys and keys that are not scalars are errors.
func (d *yamlDecoder) entries(m *ast.MappingNode, path string) []entry {
	var own, merged []entry
	seen := make(map[string]Pos)
	for _, mv := range m.Values {
		if mv == nil {
			continue
		}
		if _, isMerge := mv.Key.(*ast.MergeKeyNode); isMerge {
			merged = append(merged, d.mergeSources(mv.Value, path, 0)...)
			continue
		}
		key, pos, ok := d.keyText(mv.Key, path)
		if !ok {
			continue
		}
		if first, dup := seen[key]; dup {
			if d.reportDuplicates {
				d.errorf(pos, path, "duplicate key %q (first defined at line %d, column %d)", key, first.Line, first.Column)
			}
			continue
		}
		seen[key] = pos
		own = append(own, entry{key: key, keyPos: pos, value: mv.Value})
	}
	for _, e := range merged {
		if _, dup := seen[e.key]; dup {
			continue
		}
		seen[e.key] = e.keyPos
		own = append(own, e)
	}
	return own
}

// mergeSources returns the entries a merge key's value contributes: one
// mapping or a list of mappings, earlier ones taking precedence.
func (d *yamlDecoder) mergeSources(n ast.Node, path string, depth int) []entry {
	v, ok := d.value(n, path)
	if !ok {
		return nil
	}
	switch v.kind {
	case kindMapping:
		if depth > maxDepth {
			return nil
		}
		return d.entries(v.mapping(), path)
	case kindSequence:
		if depth > 0 {
			break
		}
		var out []entry
		for _, el := range v.sequence() {
			out = append(out, d.mergeSources(el, path, depth+1)...)
		}
		return out
	}
	d.errorf(v.pos, path, "a merge key (<<) takes a mapping or a list of mappings, not %s", v.kind)
	return nil
}

// keyText returns a mapping key as a string. Keys are scalars, taken literally.
func (d *yamlDecoder) keyText(k ast.MapKeyNode, path string) (string, Pos, bool) {
	var n ast.Node = k
	if mk, ok := k.(*ast.MappingKeyNode); ok {
		n = mk.Value
	}
	pos := d.doc.posOf(k)
	literal := d.literal
	d.literal = true // keys are never expanded
	v, ok := d.value(n, path)
	d.literal = literal
	if !ok {
		return "", pos, false
	}
	switch v.kind {
	case kindString, kindInt, kindFloat, kindBool:
		return v.str, pos, true
	}
	d.errorf(pos, path, "a key must be a plain string, not %s", v.kind)
	return "", pos, false
}

// visit counts work against maxVisits; it reports the overflow once.
func (d *yamlDecoder) visit(pos Pos, path string) bool {
	d.visits++
	if d.visits == maxVisits {
		d.errorf(pos, path, "the document expands to too many values (more than %d; aliases?)", maxVisits)
	}
	return d.visits < maxVisits
}

// join appends a key to a dotted path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index appends a list index to a path.
func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// quoteList formats names as "a", "b" or "c".
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	switch len(q) {
	case 0:
		return ""
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
