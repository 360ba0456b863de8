package configs

import "strings"

// redactedPassword replaces passwords in redacted DSNs, as net/url's Redacted does.
const redactedPassword = "xxxxx"

// RedactDSN returns dsn without its password, for errors and logs. It handles
// URL-form DSNs ("postgres://user:pw@host/db?password=pw", also postgresql://)
// and keyword/value DSNs ("host=h password='pw'"), and also malformed ones:
// nothing between a userinfo's first ":" and its last "@", and nothing after
// "password=" in a DSN it cannot parse, is ever returned. It may hide more than
// the password of a malformed DSN, never less. Keys ending in "password"
// (sslpassword) are redacted too. RedactDSN is safe for concurrent use.
func RedactDSN(dsn string) string {
	out, _ := redactDSN(dsn)
	return out
}

// redactDSN is RedactDSN that also returns the text it removed.
func redactDSN(dsn string) (string, []string) {
	var removed []string
	if i := strings.Index(dsn, "://"); i > 0 && isPostgresScheme(dsn[:i]) {
		out := redactUserinfo(dsn, i+3, &removed)
		return redactAfterPasswordKey(out, &removed), removed
	}
	if out, ok := redactKeywordValue(dsn, &removed); ok {
		return out, removed
	}
	// Malformed: keep what is before the first "password=" and the userinfo user.
	out := redactAfterPasswordKey(dsn, &removed)
	if strings.Contains(out, "@") {
		// Skip a mistyped scheme ("postgres//"), but only one before the
		// first ":", which could otherwise be inside the password.
		start := 0
		if i, c := strings.Index(out, "//"), strings.IndexByte(out, ':'); i >= 0 && (c < 0 || i < c) {
			start = i + 2
		}
		out = redactUserinfo(out, start, &removed)
	}
	return out, removed
}

// isPostgresScheme reports whether s is a scheme libpq reads as a URL. Any
// other "x://" is malformed, and "x:" could start a password.
func isPostgresScheme(s string) bool {
	return strings.EqualFold(s, "postgres") || strings.EqualFold(s, "postgresql")
}

// redactUserinfo replaces everything between the first ":" after start and the
// last "@" of s. Taking the last "@" also covers passwords with a raw "@".
func redactUserinfo(s string, start int, removed *[]string) string {
	at := strings.LastIndexByte(s[start:], '@')
	if at < 0 {
		return s
	}
	at += start
	c := strings.IndexByte(s[start:at], ':')
	if c < 0 {
		return s
	}
	c += start
	*removed = append(*removed, s[c+1:at])
	return s[:c+1] + redactedPassword + s[at:]
}

// redactAfterPasswordKey cuts s after the first "password=" (any case, spaces
// allowed around "="), replacing the rest with the redaction marker.
func redactAfterPasswordKey(s string, removed *[]string) string {
	lower := strings.ToLower(s)
	from := 0
	for {
		i := strings.Index(lower[from:], "password")
		if i < 0 {
			return s
		}
		j := from + i + len("password")
		for j < len(s) && isDSNSpace(s[j]) {
			j++
		}
		if j < len(s) && s[j] == '=' {
			*removed = append(*removed, s[j+1:])
			return s[:j+1] + redactedPassword
		}
		from = from + i + 1
	}
}

// redactKeywordValue redacts a well-formed keyword/value DSN. It reports false
// when s does not parse, so the caller falls back to cutting.
func redactKeywordValue(s string, removed *[]string) (string, bool) {
	var b strings.Builder
	last := 0 // s[last:] is not yet copied
	i := 0
	for {
		for i < len(s) && isDSNSpace(s[i]) {
			i++
		}
		if i == len(s) {
			break
		}
		keyStart := i
		for i < len(s) && s[i] != '=' && !isDSNSpace(s[i]) {
			i++
		}
		key := s[keyStart:i]
		for i < len(s) && isDSNSpace(s[i]) {
			i++
		}
		if !validEnvName(key) || i == len(s) || s[i] != '=' {
			return "", false // libpq keywords are identifiers
		}
		i++
		for i < len(s) && isDSNSpace(s[i]) {
			i++
		}
		valStart := i
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				if s[i] == '\\' {
					i += 2
					continue
				}
				if s[i] == '\'' {
					closed = true
					i++
					break
				}
				i++
			}
			if !closed {
				return "", false
			}
		} else {
			for i < len(s) && !isDSNSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
		}
		i = min(i, len(s))
		if strings.HasSuffix(strings.ToLower(key), "password") {
			b.WriteString(s[last:valStart])
			b.WriteString(redactedPassword)
			*removed = append(*removed, s[valStart:i])
			last = i
		}
	}
	b.WriteString(s[last:])
	return b.String(), true
}

func isDSNSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
