package configs

import (
	"fmt"
	"strings"
)

// maxIdentifierBytes is PostgreSQL's NAMEDATALEN-1.
const maxIdentifierBytes = 63

// TableRef names a table. Names are used exactly as written, like quoted SQL
// identifiers: "Orders" and "orders" are different tables.
type TableRef struct {
	Schema string
	Table  string
}

// String returns "schema.table".
func (t TableRef) String() string { return t.Schema + "." + t.Table }

// parseTableRef parses "schema.table" or "table" (schema public).
func parseTableRef(s string) (TableRef, error) {
	schema, table, qualified := strings.Cut(s, ".")
	if !qualified {
		schema, table = "public", s
	}
	if err := checkIdentifier(schema); err != nil {
		return TableRef{}, fmt.Errorf("schema: %w", err)
	}
	if err := checkIdentifier(table); err != nil {
		if qualified {
			return TableRef{}, fmt.Errorf("table: %w", err)
		}
		return TableRef{}, err
	}
	return TableRef{Schema: schema, Table: table}, nil
}

const identifierRule = "1–63 bytes of letters, digits, _ and $, not starting with a digit or $"

// checkIdentifier checks an SQL identifier: what PostgreSQL accepts unquoted,
// but case-sensitive.
func checkIdentifier(s string) error {
	if s == "" || len(s) > maxIdentifierBytes {
		return fmt.Errorf("expected %s", identifierRule)
	}
	for i, c := range s {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case ('0' <= c && c <= '9' || c == '$') && i > 0:
		default:
			return fmt.Errorf("expected %s", identifierRule)
		}
	}
	return nil
}

const slotRule = "1–63 characters of a-z, 0-9 and _"

// checkSlotName applies PostgreSQL's rule for replication slot names
// (ReplicationSlotValidateName): lower-case letters, digits and underscores.
func checkSlotName(s string) error {
	if s == "" || len(s) > maxIdentifierBytes {
		return fmt.Errorf("expected %s", slotRule)
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return fmt.Errorf("expected %s", slotRule)
		}
	}
	return nil
}

const nameRule = "letters, digits, _, . and -"

// checkName checks an observer, action or listener name: it ends up in
// checkpoint rows, metric labels and log fields.
func checkName(s string, maxLen int) error {
	if s == "" || len(s) > maxLen {
		return fmt.Errorf("expected 1–%d characters of %s", maxLen, nameRule)
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("expected 1–%d characters of %s", maxLen, nameRule)
		}
	}
	return nil
}
