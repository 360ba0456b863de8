package eval

import (
	"cmp"
	"fmt"
	"math"
	"strconv"
)

// Numeric is an exact decimal number: every JSON number of an event that is not an
// integer within int64 (numeric columns with a scale, float columns, 30-digit integers)
// becomes a Numeric holding its original text. Comparisons with other numbers are exact;
// rendering reproduces the text byte for byte; arithmetic and the numeric built-ins
// (abs, round, sum, ...) use its nearest float64, like every float in expr.
//
// The zero Numeric is 0. A Numeric is an immutable value, safe to share.
type Numeric struct{ text string }

// ParseNumeric returns the Numeric written s, which must be a JSON number
// ("12.50", "-1e3", "123456789012345678901234567890").
func ParseNumeric(s string) (Numeric, error) {
	if !validNumber(s) {
		return Numeric{}, fmt.Errorf("parse numeric %q: not a JSON number", s)
	}
	return Numeric{text: s}, nil
}

// String returns the number's text, exactly as it was written.
func (n Numeric) String() string {
	if n.text == "" {
		return "0"
	}
	return n.text
}

// MarshalJSON implements json.Marshaler: the text, as a JSON number.
func (n Numeric) MarshalJSON() ([]byte, error) { return []byte(n.String()), nil }

// Float64 returns the float64 nearest to n (±Inf beyond the float64 range).
func (n Numeric) Float64() float64 {
	f, _ := strconv.ParseFloat(n.String(), 64)
	return f
}

// validNumber reports whether s follows the JSON number grammar.
func validNumber[T ~string | ~[]byte](s T) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i == len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i == len(s) || !isDigit(s[i]) {
			return false
		}
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	return i == len(s)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// decimal is a view of a number's text as sign, digits and exponent, normalised so
// that two decimals of equal value compare equal whatever their spelling
// ("100" and "1.00e2"). It does not allocate.
type decimal[T ~string | ~[]byte] struct {
	neg    bool
	ip, fp T   // integer and fraction digits, as written
	lz, tz int // leading and trailing zeros of ip+fp
	point  int64
}

// maxExp bounds exponents so that absurd ones ("1e999999999999") cannot overflow.
const maxExp = 1 << 40

// parseDecimal reads a JSON number's text. Text outside the grammar reads as zero;
// callers validate first.
func parseDecimal[T ~string | ~[]byte](s T) decimal[T] {
	var d decimal[T]
	i := 0
	if i < len(s) && s[i] == '-' {
		d.neg = true
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	d.ip = s[start:i]
	if i < len(s) && s[i] == '.' {
		i++
		start = i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		d.fp = s[start:i]
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		for ; i < len(s) && isDigit(s[i]); i++ {
			if exp < maxExp {
				exp = exp*10 + int64(s[i]-'0')
			}
		}
		if eneg {
			exp = -exp
		}
	}
	n := len(d.ip) + len(d.fp)
	for d.lz < n && d.digit(d.lz) == '0' {
		d.lz++
	}
	for d.tz < n-d.lz && d.digit(n-1-d.tz) == '0' {
		d.tz++
	}
	d.point = int64(len(d.ip)-d.lz) + exp
	return d
}

// digit returns digit j of ip+fp.
func (d *decimal[T]) digit(j int) byte {
	if j < len(d.ip) {
		return d.ip[j]
	}
	return d.fp[j-len(d.ip)]
}

// sig returns the number of significant digits (0 for zero).
func (d *decimal[T]) sig() int { return len(d.ip) + len(d.fp) - d.lz - d.tz }

// compareDecimals returns -1, 0 or +1 as a is less than, equal to or greater than b.
func compareDecimals[A, B ~string | ~[]byte](a decimal[A], b decimal[B]) int {
	an, bn := a.sig(), b.sig()
	sa, sb := sign(a.neg, an), sign(b.neg, bn)
	if sa != sb || sa == 0 {
		return cmp.Compare(sa, sb)
	}
	c := 0
	switch {
	case a.point != b.point:
		c = cmp.Compare(a.point, b.point)
	default:
		for k := 0; k < an || k < bn; k++ {
			var da, db byte = '0', '0'
			if k < an {
				da = a.digit(a.lz + k)
			}
			if k < bn {
				db = b.digit(b.lz + k)
			}
			if da != db {
				c = cmp.Compare(int(da), int(db))
				break
			}
		}
	}
	return c * sa
}

func sign(neg bool, sig int) int {
	switch {
	case sig == 0:
		return 0
	case neg:
		return -1
	}
	return 1
}

// number classifies v: an integer (i, kind intNum), a float (f, floatNum), a
// Numeric (n, decNum), or not a number (kind 0).
type numKind uint8

const (
	notNum numKind = iota
	intNum
	uintNum
	floatNum
	decNum
)

type num struct {
	kind numKind
	i    int64
	u    uint64
	f    float64
	n    Numeric
}

func asNumber(v any) num {
	switch x := v.(type) {
	case int64:
		return num{kind: intNum, i: x}
	case int:
		return num{kind: intNum, i: int64(x)}
	case float64:
		return num{kind: floatNum, f: x}
	case Numeric:
		return num{kind: decNum, n: x}
	case int32:
		return num{kind: intNum, i: int64(x)}
	case int16:
		return num{kind: intNum, i: int64(x)}
	case int8:
		return num{kind: intNum, i: int64(x)}
	case uint:
		return num{kind: uintNum, u: uint64(x)}
	case uint64:
		return num{kind: uintNum, u: x}
	case uint32:
		return num{kind: intNum, i: int64(x)}
	case uint16:
		return num{kind: intNum, i: int64(x)}
	case uint8:
		return num{kind: intNum, i: int64(x)}
	case float32:
		// The float32's own shortest decimal, so float32(0.1) equals 0.1.
		f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
		return num{kind: floatNum, f: f}
	}
	return num{}
}

// appendText appends the decimal text of a finite number.
func (n num) appendText(b []byte) []byte {
	switch n.kind {
	case intNum:
		return strconv.AppendInt(b, n.i, 10)
	case uintNum:
		return strconv.AppendUint(b, n.u, 10)
	case floatNum:
		return strconv.AppendFloat(b, n.f, 'e', -1, 64)
	}
	return append(b, n.n.String()...)
}

// compareNumbers compares two numbers exactly. A float64 stands for its shortest
// decimal representation (the literal 0.1 is exactly 0.1), so the comparison never
// claims that two different decimals are equal. ok is false when either is NaN.
func compareNumbers(a, b num) (c int, ok bool) {
	switch {
	case a.kind == intNum && b.kind == intNum:
		return cmp.Compare(a.i, b.i), true
	case a.kind == floatNum && b.kind == floatNum:
		if math.IsNaN(a.f) || math.IsNaN(b.f) {
			return 0, false
		}
		switch {
		case a.f < b.f:
			return -1, true
		case a.f > b.f:
			return 1, true
		}
		return 0, true
	}
	if a.kind == floatNum && !finite(a.f) || b.kind == floatNum && !finite(b.f) {
		return compareNonFinite(a, b)
	}
	var ab, bb [32]byte
	var as, bs []byte
	if a.kind != decNum {
		as = a.appendText(ab[:0])
	}
	if b.kind != decNum {
		bs = b.appendText(bb[:0])
	}
	switch {
	case a.kind == decNum && b.kind == decNum:
		return compareDecimals(parseDecimal(a.n.String()), parseDecimal(b.n.String())), true
	case a.kind == decNum:
		return compareDecimals(parseDecimal(a.n.String()), parseDecimal(bs)), true
	case b.kind == decNum:
		return compareDecimals(parseDecimal(as), parseDecimal(b.n.String())), true
	}
	return compareDecimals(parseDecimal(as), parseDecimal(bs)), true
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// compareNonFinite handles NaN and ±Inf against any number.
func compareNonFinite(a, b num) (int, bool) {
	inf := func(n num) int {
		if n.kind != floatNum {
			return 0
		}
		switch {
		case math.IsNaN(n.f):
			return 2
		case math.IsInf(n.f, 1):
			return 1
		case math.IsInf(n.f, -1):
			return -1
		}
		return 0
	}
	ia, ib := inf(a), inf(b)
	if ia == 2 || ib == 2 {
		return 0, false
	}
	return cmp.Compare(ia, ib), true
}

// toFloat converts a Numeric to its nearest float64 and leaves every other value
// alone; arithmetic operands and numeric built-in arguments go through it. Lists are
// converted element by element (copying only when one holds a Numeric).
func toFloat(v any) any {
	switch x := v.(type) {
	case Numeric:
		return x.Float64()
	case []any:
		for i, e := range x {
			if _, ok := e.(Numeric); ok {
				c := make([]any, len(x))
				copy(c, x)
				for j := i; j < len(c); j++ {
					if n, ok := c[j].(Numeric); ok {
						c[j] = n.Float64()
					}
				}
				return c
			}
		}
	}
	return v
}
