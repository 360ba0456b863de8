package configs

import (
	"fmt"

	"github.com/goccy/go-yaml/token"
)

// Limits on the shape of a YAML document, checked before it is parsed. The YAML
// parser's work grows with the square of the nesting depth and of the number of
// keys of a block mapping, and it keeps a few hundred bytes per token: 100,000
// nested "[" (200 KB) took it 47 s and 15 GB. A real configuration nests fewer than
// ten levels and has a few hundred values.
const (
	// maxNesting is the deepest nesting of lists and mappings (block and flow).
	maxNesting = 64
	// maxValues is the most keys, list entries, flow entries and comments of a
	// document.
	maxValues = 50_000
	// maxMappingWork bounds the sum over block mappings of the square of their
	// number of keys: one mapping may have 4,000 keys, four 2,000 each.
	maxMappingWork = 4_000 * 4_000
)

// shapeError is a document that breaks a shape limit, at the byte offset where
// it does (pre-scan) or at a line and column (token check).
type shapeError struct {
	off       int
	line, col int
	msg       string
}

func (e *shapeError) pos(file string, data []byte) Pos {
	if e.line > 0 {
		return Pos{File: file, Line: e.line, Column: max(e.col, 1)}
	}
	line, col := 1, 1
	for _, r := range string(data[:min(e.off, len(data))]) {
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return Pos{File: file, Line: line, Column: col}
}

func tooDeep(off int) *shapeError {
	return &shapeError{off: off, msg: fmt.Sprintf("lists and mappings nest more than %d levels deep here: a configuration needs fewer than 10 (is this the right file?)", maxNesting)}
}

func tooWide(off int) *shapeError {
	return &shapeError{off: off, msg: "the mappings up to here hold too many keys: a mapping may have up to 4000 keys, several large mappings fewer together (is this the right file?)"}
}

func tooMany(off int) *shapeError {
	return &shapeError{off: off, msg: fmt.Sprintf("the document has more than %d keys, list entries and comments (is this the right file?)", maxValues)}
}

// blockFrame is an open block mapping or block sequence: the column of its
// entries and how many it has.
type blockFrame struct {
	col     int
	seq     bool
	entries int
}

// blockStack tracks the open block collections by the columns of their entries,
// and counts values, for both the pre-scan and the token check.
type blockStack struct {
	frames []blockFrame
	values int
	work   int // sum of the squares of the block mappings' numbers of keys
}

// value counts one key, list entry or comment.
func (b *blockStack) value(off int) *shapeError {
	b.values++
	if b.values > maxValues {
		return tooMany(off)
	}
	return nil
}

// entry records a block entry (a "- " or a key) at col, with flow open flow
// collections around it; it returns the limit it breaks, if any.
func (b *blockStack) entry(col int, seq bool, flow int, off int) *shapeError {
	if err := b.value(off); err != nil {
		return err
	}
	for len(b.frames) > 0 && b.frames[len(b.frames)-1].col > col {
		b.frames = b.frames[:len(b.frames)-1]
	}
	if n := len(b.frames); n > 0 && b.frames[n-1].col == col && b.frames[n-1].seq && !seq {
		// A key after a list written at its parent key's column ends the list.
		b.frames = b.frames[:n-1]
	}
	if n := len(b.frames); n > 0 && b.frames[n-1].col == col && b.frames[n-1].seq == seq {
		b.frames[n-1].entries++
		if !seq {
			b.work += 2*b.frames[n-1].entries - 1 // n² - (n-1)²
			if b.work > maxMappingWork {
				return tooWide(off)
			}
		}
		return nil
	}
	b.frames = append(b.frames, blockFrame{col: col, seq: seq, entries: 1})
	if !seq {
		b.work++
	}
	if len(b.frames)+flow > maxNesting {
		return tooDeep(off)
	}
	return nil
}

func (b *blockStack) reset() { b.frames = b.frames[:0] }

// openFlow records a flow collection opening at depth flow.
func (b *blockStack) openFlow(flow int, off int) *shapeError {
	if len(b.frames)+flow > maxNesting {
		return tooDeep(off)
	}
	return nil
}

// prescanShape checks data against the shape limits without parsing it: one pass
// over the bytes, no allocation per byte. It follows the YAML scanner's rules for
// what starts a quoted scalar, a comment, a block scalar and a flow collection,
// so brackets in quoted strings, comments, block scalars (body templates) and
// plain scalars (conditions) never count. Where it cannot tell, it counts: the
// checks on the scanner's tokens (checkTokens) catch what it misses.
func prescanShape(data []byte) *shapeError {
	var (
		b           blockStack
		flow        int  // open flow collections
		buf         bool // a plain scalar is in progress
		bufCol      int  // column where it started
		quoteCol    int  // column of the quoted scalar just closed, 0 if none
		lastDelim   int  // column of the last key or "- " (the YAML scanner's lastDelimColumn)
		quote       byte // the open quote, when a quoted scalar spans lines
		blockParent = -1 // >= 0 inside a block scalar: lines must be indented past it
	)
	for lineStart := 0; lineStart < len(data); {
		end := lineStart
		for end < len(data) && data[end] != '\n' {
			end++
		}
		line := data[lineStart:end]
		next := end + 1
		indent := 0
		for indent < len(line) && line[indent] == ' ' {
			indent++
		}
		blank := indent == len(line)
		for i := indent; i < len(line) && blank; i++ {
			blank = line[i] == '\t'
		}
		marker := len(line) >= 3 && (string(line[:3]) == "---" || string(line[:3]) == "...") &&
			(len(line) == 3 || line[3] == ' ' || line[3] == '\t')
		firstCol := indent + 1
		i := indent
		switch {
		case quote != 0:
			i = 0
		case blockParent >= 0:
			if blank || !marker && (blockParent == 0 || firstCol > blockParent) {
				lineStart = next
				continue
			}
			blockParent = -1
		}
		if quote == 0 {
			if blank {
				lineStart = next
				continue
			}
			if marker {
				b.reset()
				flow, buf, quoteCol, lastDelim = 0, false, 0, 0
				i = 3
			} else if lastDelim != 0 && firstCol <= lastDelim {
				buf = false // the YAML scanner ends a plain scalar at a less indented line
			}
		}
		prevSpace := true
	chars:
		for ; i < len(line); i++ {
			c := line[i]
			col := i + 1
			off := lineStart + i
			if quote != 0 {
				switch {
				case quote == '\'' && c == '\'' && i+1 < len(line) && line[i+1] == '\'':
					i++
				case quote == '"' && c == '\\':
					i++
				case c == quote:
					quote = 0
					prevSpace = false
				}
				continue
			}
			var nextC byte = '\n'
			if i+1 < len(line) {
				nextC = line[i+1]
			}
			sep := nextC == ' ' || nextC == '\t' || nextC == '\n'
			switch {
			case c == ' ' || c == '\t':
				prevSpace = true
				continue
			case c == '#' && (!buf || prevSpace):
				if err := b.value(off); err != nil {
					return err
				}
				break chars
			case (c == '\'' || c == '"') && !buf:
				quote, quoteCol = c, col
			case (c == '[' || c == '{') && (!buf || flow > 0):
				flow++
				if err := b.openFlow(flow, off); err != nil {
					return err
				}
				buf, quoteCol = false, 0
			case (c == ']' || c == '}') && flow > 0:
				flow--
				buf, quoteCol = false, 0
			case c == ',' && flow > 0:
				if err := b.value(off); err != nil {
					return err
				}
				buf, quoteCol = false, 0
			case c == ':' && flow > 0 && nextC != '/':
				buf, quoteCol = false, 0
			case c == ':' && sep && (buf || quoteCol > 0):
				key := bufCol
				if !buf {
					key = quoteCol
				}
				if err := b.entry(key, false, flow, lineStart+key-1); err != nil {
					return err
				}
				lastDelim, buf, quoteCol = key, false, 0
			case (c == '-' || c == '?') && !buf && flow == 0 && sep:
				if err := b.entry(col, c == '-', flow, off); err != nil {
					return err
				}
				lastDelim, quoteCol = col, 0
			case (c == '|' || c == '>') && !buf && flow == 0:
				blockParent = lastDelim
				if col == 1 {
					blockParent = 1
				}
				break chars
			case (c == '&' || c == '!' || c == '*') && !buf:
				// An anchor, tag or alias: a token up to the next space.
				for i+1 < len(line) && line[i+1] != ' ' && line[i+1] != '\t' && (flow == 0 || line[i+1] != ',') {
					i++
				}
				quoteCol = 0
			default:
				if !buf {
					buf, bufCol = true, col
				}
				quoteCol = 0
			}
			prevSpace = false
		}
		lineStart = next
	}
	return nil
}

// checkTokens applies the shape limits to the YAML scanner's tokens, before the
// parser sees them: it catches what prescanShape may have missed.
func checkTokens(tokens token.Tokens) *shapeError {
	var (
		b    blockStack
		flow int
	)
	for i, tk := range tokens {
		if tk == nil || tk.Position == nil {
			continue
		}
		var err *shapeError
		at := tk
		switch tk.Type {
		case token.DocumentHeaderType:
			b.reset()
		case token.SequenceStartType, token.MappingStartType:
			flow++
			err = b.openFlow(flow, 0)
		case token.SequenceEndType, token.MappingEndType:
			if flow > 0 {
				flow--
			}
		case token.CollectEntryType, token.CommentType:
			err = b.value(0)
		case token.SequenceEntryType, token.MappingKeyType:
			err = b.entry(tk.Position.Column, tk.Type == token.SequenceEntryType, flow, 0)
		case token.MappingValueType:
			if flow == 0 && i > 0 && tokens[i-1] != nil && tokens[i-1].Position != nil {
				at = tokens[i-1]
				err = b.entry(at.Position.Column, false, flow, 0)
			}
		}
		if err != nil {
			err.line, err.col = at.Position.Line, at.Position.Column
			return err
		}
	}
	return nil
}
