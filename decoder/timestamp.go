package decoder

import "time"

// The server formats date/time values with its DateStyle; the forms handled here are
// those of DateStyle ISO ("2024-01-02 03:04:05.123456+05:30"). Anything else (infinity,
// BC dates, years beyond what the parser below accepts, other DateStyles) is passed
// unchanged as a JSON string by the caller.

// appendTimestamp appends a timestamp ("2024-01-02 03:04:05.123456") as the ISO 8601
// string "2024-01-02T03:04:05.123456". With tz it expects an offset after the time
// ("+00", "+05:30", "-03:30", "+00:19:32") and writes it as "Z" or "±hh:mm"; an offset
// with seconds (local mean time before 1900 in some zones) is converted to UTC.
func appendTimestamp(dst, s []byte, tz bool) ([]byte, bool) {
	// Date: at least four year digits.
	y := 0
	for y < len(s) && isDigit(s[y]) {
		y++
	}
	if y < 4 || !match(s, y, "-00-00 00:00:00") {
		return nil, false
	}
	end := y + len("-00-00 00:00:00")
	end = skipFraction(s, end)
	if end < 0 {
		return nil, false
	}
	if !tz {
		if end != len(s) {
			return nil, false
		}
		dst = append(dst, '"')
		dst = append(dst, s[:y+6]...)
		dst = append(dst, 'T')
		dst = append(dst, s[y+7:]...)
		return append(dst, '"'), true
	}
	off, secs, ok := parseOffset(s[end:])
	if !ok {
		return nil, false
	}
	if secs%60 != 0 {
		return appendUTC(dst, s, y, end, secs)
	}
	dst = append(dst, '"')
	dst = append(dst, s[:y+6]...)
	dst = append(dst, 'T')
	dst = append(dst, s[y+7:end]...)
	dst = appendOffset(dst, off, secs)
	return append(dst, '"'), true
}

// appendUTC writes a timestamp whose offset has seconds in UTC. Only years 1 to 9999 are
// converted; others are left to the caller's fallback.
func appendUTC(dst, s []byte, y, end, offSecs int) ([]byte, bool) {
	if y != 4 {
		return nil, false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range s[i : i+n] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	t := time.Date(num(0, 4), time.Month(num(5, 2)), num(8, 2), num(11, 2), num(14, 2), num(17, 2), 0, time.UTC)
	t = t.Add(-time.Duration(offSecs) * time.Second)
	if t.Year() < 1 || t.Year() > 9999 {
		return nil, false
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, "2006-01-02T15:04:05")
	dst = append(dst, s[19:end]...) // the fraction, unchanged by a whole-second shift
	return append(dst, `Z"`...), true
}

// appendTimeTZ appends a time with time zone ("03:04:05.5+05:30") with its offset
// written as "Z" or "±hh:mm". An offset with seconds cannot be written in ISO 8601 and
// is left to the caller's fallback.
func appendTimeTZ(dst, s []byte) ([]byte, bool) {
	if !match(s, 0, "00:00:00") {
		return nil, false
	}
	end := skipFraction(s, 8)
	if end < 0 {
		return nil, false
	}
	off, secs, ok := parseOffset(s[end:])
	if !ok || secs%60 != 0 {
		return nil, false
	}
	dst = append(dst, '"')
	dst = append(dst, s[:end]...)
	dst = appendOffset(dst, off, secs)
	return append(dst, '"'), true
}

// parseOffset parses "+hh", "+hh:mm" or "+hh:mm:ss" (or with '-'), returning the text
// and the offset in seconds east of UTC.
func parseOffset(s []byte) ([]byte, int, bool) {
	var ok bool
	switch len(s) {
	case 3:
		ok = match(s, 1, "00")
	case 6:
		ok = match(s, 1, "00:00")
	case 9:
		ok = match(s, 1, "00:00:00")
	}
	if !ok || (s[0] != '+' && s[0] != '-') {
		return nil, 0, false
	}
	secs := 3600 * (int(s[1]-'0')*10 + int(s[2]-'0'))
	if len(s) >= 6 {
		secs += 60 * (int(s[4]-'0')*10 + int(s[5]-'0'))
	}
	if len(s) == 9 {
		secs += int(s[7]-'0')*10 + int(s[8]-'0')
	}
	if s[0] == '-' {
		secs = -secs
	}
	return s, secs, true
}

// appendOffset writes an offset of whole minutes as "Z" or "±hh:mm".
func appendOffset(dst, off []byte, secs int) []byte {
	if secs == 0 {
		return append(dst, 'Z')
	}
	dst = append(dst, off[:3]...)
	if len(off) >= 6 {
		return append(dst, off[3:6]...)
	}
	return append(dst, ":00"...)
}

// skipFraction returns the index after an optional ".d" (1 to 6 digits) at i, or -1.
func skipFraction(s []byte, i int) int {
	if i >= len(s) || s[i] != '.' {
		return i
	}
	j := i + 1
	for j < len(s) && isDigit(s[j]) {
		j++
	}
	if j == i+1 || j-i-1 > 6 {
		return -1
	}
	return j
}

// match reports whether s[i:] starts with pattern, where '0' in pattern stands for any
// digit and other bytes match themselves.
func match(s []byte, i int, pattern string) bool {
	if len(s)-i < len(pattern) {
		return false
	}
	for j := 0; j < len(pattern); j++ {
		c := s[i+j]
		if pattern[j] == '0' {
			if !isDigit(c) {
				return false
			}
		} else if c != pattern[j] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
