package configs

import (
	"fmt"
	"strings"
)

// expandEnv expands ${NAME} and ${NAME:-default} in s, looking variables up
// with lookup. "$${" is a literal "${"; any other "$" is kept as written. The
// default is used when NAME is unset or empty, and runs to the first "}".
//
// It reports whether s held a reference. Its errors name the variable and never
// carry a value.
func expandEnv(s string, lookup func(string) (string, bool)) (string, bool, error) {
	if !strings.Contains(s, "${") {
		return s, false, nil
	}
	var b strings.Builder
	expanded := false
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), expanded, nil
		}
		if i > 0 && s[i-1] == '$' {
			// "$${" is an escaped "${".
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		s = s[i+2:]
		end := strings.IndexByte(s, '}')
		if end < 0 {
			return "", false, fmt.Errorf(`unterminated "${" (write "$${" for a literal "${")`)
		}
		ref := s[:end]
		s = s[end+1:]
		name, def, hasDef := strings.Cut(ref, ":-")
		if !validEnvName(name) {
			return "", false, fmt.Errorf("invalid environment variable reference %q: a name is letters, digits and _, not starting with a digit", "${"+ref+"}")
		}
		expanded = true
		v, ok := lookup(name)
		switch {
		case hasDef && v == "":
			v = def
		case !ok:
			return "", false, &unsetVarError{name: name}
		}
		b.WriteString(v)
	}
}

// validEnvName reports whether name is a portable environment variable name.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// unsetVarError is a ${NAME} reference, without a default, to a variable that is
// not set.
type unsetVarError struct{ name string }

func (e *unsetVarError) Error() string {
	return fmt.Sprintf("environment variable %s is not set (use ${%s:-default} for a default)", e.name, e.name)
}
