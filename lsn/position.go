package lsn

import (
	"fmt"
	"strconv"
	"strings"
)

// Position identifies one change in the commit-ordered stream: the commit LSN of its
// transaction and the ordinal of the change within that transaction (1 for the first
// change pgoutput sent for it). Positions order transactions by commit, which is the
// order the stream delivers them, and changes by their place in the transaction.
//
// A Position with Ord 0 stands for "before every change of that transaction".
// Its text form, "16/B374D848:3", is the event id of the change.
type Position struct {
	Commit LSN
	Ord    uint32
}

// ParsePosition parses the form produced by Position.String ("16/B374D848:3").
func ParsePosition(s string) (Position, error) {
	colon := strings.LastIndexByte(s, ':')
	if colon < 0 {
		return Position{}, fmt.Errorf("parse position %q: missing ':' before the ordinal", s)
	}
	l, err := Parse(s[:colon])
	if err != nil {
		return Position{}, fmt.Errorf("parse position %q: %w", s, err)
	}
	ord, err := strconv.ParseUint(s[colon+1:], 10, 32)
	if err != nil {
		return Position{}, fmt.Errorf("parse position %q: ordinal: %w", s, ErrSyntax)
	}
	return Position{Commit: l, Ord: uint32(ord)}, nil
}

// String returns the event-id form "16/B374D848:3".
func (p Position) String() string { return string(p.AppendText(make([]byte, 0, 28))) }

// AppendText appends the event-id form of p to b.
func (p Position) AppendText(b []byte) []byte {
	b = p.Commit.AppendText(b)
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(p.Ord), 10)
}

// MarshalText implements encoding.TextMarshaler.
func (p Position) MarshalText() ([]byte, error) { return p.AppendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Position) UnmarshalText(b []byte) error {
	v, err := ParsePosition(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Compare returns -1, 0 or +1 as p is before, equal to or after q in stream order.
func (p Position) Compare(q Position) int {
	if c := p.Commit.Compare(q.Commit); c != 0 {
		return c
	}
	switch {
	case p.Ord < q.Ord:
		return -1
	case p.Ord > q.Ord:
		return 1
	}
	return 0
}

// ComparePositions is Position.Compare as a function, for NewWatermark.
func ComparePositions(a, b Position) int { return a.Compare(b) }

// CompareLSNs is LSN.Compare as a function, for NewWatermark.
func CompareLSNs(a, b LSN) int { return a.Compare(b) }
