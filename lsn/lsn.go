// Package lsn holds PostgreSQL write-ahead log positions, event positions within a
// transaction, and the acknowledgement watermark that decides what may be confirmed.
//
// The package is the pure core of the service: standard library only, no I/O.
package lsn

import (
	"errors"
	"fmt"
	"strconv"
)

// LSN is a PostgreSQL log sequence number: a byte position in the write-ahead log.
// The zero LSN is invalid ("0/0") and means "no position".
type LSN uint64

// ErrSyntax is returned (wrapped) by Parse for text that is not of the form X/Y.
var ErrSyntax = errors.New("invalid LSN syntax")

// Parse parses the textual form PostgreSQL uses, two hexadecimal numbers of up to
// eight digits separated by a slash ("16/B374D848").
func Parse(s string) (LSN, error) {
	slash := -1
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			slash = i
			break
		}
	}
	if slash <= 0 || slash == len(s)-1 || slash > 8 || len(s)-slash-1 > 8 {
		return 0, fmt.Errorf("parse LSN %q: %w", s, ErrSyntax)
	}
	hi, ok := parseHex32(s[:slash])
	if !ok {
		return 0, fmt.Errorf("parse LSN %q: %w", s, ErrSyntax)
	}
	lo, ok := parseHex32(s[slash+1:])
	if !ok {
		return 0, fmt.Errorf("parse LSN %q: %w", s, ErrSyntax)
	}
	return LSN(uint64(hi)<<32 | uint64(lo)), nil
}

func parseHex32(s string) (uint32, bool) {
	var v uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(d)
	}
	return v, true
}

// String formats l the way PostgreSQL does: upper-case hexadecimal, no leading zeros.
func (l LSN) String() string {
	return string(l.AppendText(make([]byte, 0, 17)))
}

// AppendText appends the textual form of l to b and returns the extended buffer.
func (l LSN) AppendText(b []byte) []byte {
	start := len(b)
	b = strconv.AppendUint(b, uint64(l)>>32, 16)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(l)&0xFFFFFFFF, 16)
	upper(b[start:])
	return b
}

// upper turns lower-case hexadecimal letters in b into upper case in place.
func upper(b []byte) {
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
}

// MarshalText implements encoding.TextMarshaler.
func (l LSN) MarshalText() ([]byte, error) { return l.AppendText(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// Compare returns -1, 0 or +1 as l is before, equal to or after m.
func (l LSN) Compare(m LSN) int {
	switch {
	case l < m:
		return -1
	case l > m:
		return 1
	}
	return 0
}

// Sub returns the distance in bytes from m to l, or 0 when m is not before l.
// It matches pg_wal_lsn_diff for the non-negative case and never wraps.
func (l LSN) Sub(m LSN) uint64 {
	if l <= m {
		return 0
	}
	return uint64(l - m)
}
