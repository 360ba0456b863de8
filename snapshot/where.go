package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// maxWhereBytes bounds a --where expression.
const maxWhereBytes = 4096

// exactCountBelow is the planner's estimate under which the rows are counted instead:
// a table never analysed gets a poor estimate, and a small one is cheap to count.
const exactCountBelow = 100_000

// checkWhereText checks, before the server sees it, that a --where text is at most one
// expression that stays inside the parentheses it is put in: no statement separator,
// no comment (which could hide the rest of the statement), no parameter, and
// parentheses that balance and never close one they did not open. Literals are read
// with PostgreSQL's rules under standard_conforming_strings = on, which every
// connection that runs the expression sets: '...' and E'...' strings, U&'...', B'...',
// X'...', N'...', dollar quoting ($$...$$, $tag$...$tag$) and "quoted" identifiers.
// Anything it cannot read with certainty is refused.
func checkWhereText(s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return errors.New("the expression is empty")
	case len(s) > maxWhereBytes:
		return fmt.Errorf("the expression is longer than %d bytes", maxWhereBytes)
	case strings.IndexByte(s, 0) >= 0:
		return errors.New("the expression contains a NUL byte")
	}
	depth := 0
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\'':
			end, err := skipQuoted(s, i, '\'', false)
			if err != nil {
				return err
			}
			i = end
		case c == '"':
			end, err := skipQuoted(s, i, '"', false)
			if err != nil {
				return err
			}
			i = end
		case identStart(c):
			j := i + 1
			for j < len(s) && identCont(s[j]) {
				j++
			}
			word := strings.ToLower(s[i:j])
			switch {
			case j < len(s) && s[j] == '\'' && word == "e":
				end, err := skipQuoted(s, j, '\'', true)
				if err != nil {
					return err
				}
				j = end
			case j < len(s) && s[j] == '\'' && (word == "b" || word == "x" || word == "n"):
				end, err := skipQuoted(s, j, '\'', false)
				if err != nil {
					return err
				}
				j = end
			case word == "u" && j+1 < len(s) && s[j] == '&' && (s[j+1] == '\'' || s[j+1] == '"'):
				end, err := skipQuoted(s, j+1, s[j+1], false)
				if err != nil {
					return err
				}
				j = end
			}
			i = j
		case c == '$':
			end, err := skipDollar(s, i)
			if err != nil {
				return err
			}
			i = end
		case c == ';':
			return errors.New("a semicolon is not allowed outside string literals: give one expression, not statements")
		case c == '-' && i+1 < len(s) && s[i+1] == '-', c == '/' && i+1 < len(s) && s[i+1] == '*':
			return errors.New("comments are not allowed")
		case c == '\\':
			return errors.New("a backslash is only allowed inside E'...' strings")
		case c == '(':
			depth++
			i++
		case c == ')':
			depth--
			if depth < 0 {
				return errors.New("unbalanced parentheses: a ')' closes nothing the expression opened")
			}
			i++
		default:
			i++
		}
	}
	if depth != 0 {
		return errors.New("unbalanced parentheses: a '(' is never closed")
	}
	return nil
}

// skipQuoted returns the index after the literal or quoted identifier that starts at
// s[i] == q. A doubled quote stands for one; with backslashes (E'...'), a backslash
// escapes the next byte.
func skipQuoted(s string, i int, q byte, backslashes bool) (int, error) {
	for j := i + 1; j < len(s); j++ {
		switch {
		case backslashes && s[j] == '\\':
			j++
		case s[j] == q && j+1 < len(s) && s[j+1] == q:
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	if q == '"' {
		return 0, errors.New("a quoted identifier is not closed")
	}
	return 0, errors.New("a string literal is not closed")
}

// skipDollar returns the index after the dollar-quoted string starting at s[i] == '$'.
// A '$' that does not start one ($1, a parameter, or anything else) is refused.
func skipDollar(s string, i int) (int, error) {
	j := i + 1
	if j < len(s) && s[j] >= '0' && s[j] <= '9' {
		return 0, errors.New("parameters ($1, ...) are not allowed")
	}
	if j < len(s) && s[j] != '$' {
		if !identStart(s[j]) {
			return 0, errors.New("a '$' must start a dollar-quoted string ($$...$$ or $tag$...$tag$)")
		}
		for j < len(s) && identStart(s[j]) || j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		return 0, errors.New("a '$' must start a dollar-quoted string ($$...$$ or $tag$...$tag$)")
	}
	tag := s[i : j+1]
	end := strings.Index(s[j+1:], tag)
	if end < 0 {
		return 0, errors.New("a dollar-quoted string is not closed")
	}
	return j + 1 + end + len(tag), nil
}

// identStart and identCont are PostgreSQL's identifier characters (bytes ≥ 0x80 are
// parts of multibyte letters).
func identStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func identCont(c byte) bool { return identStart(c) || c >= '0' && c <= '9' || c == '$' }

// checkWhere checks expr against t on the server, in a read-only transaction with
// standard_conforming_strings on: the statement SELECT (expr) FROM t is parsed and
// analysed (prepared, never executed) and must have no parameter and one boolean
// column. With checkWhereText this makes expr one boolean expression over t's columns;
// the extended protocol that prepares it refuses a second statement in any case.
// It returns an estimate of the rows expr selects (all rows when expr is ""): the
// planner's, or a count when that is small. Problems of expr are *RequestError.
func checkWhere(ctx context.Context, conn *pgx.Conn, t *table, expr string) (estimate int64, err error) {
	if expr != "" {
		if err := checkWhereText(expr); err != nil {
			return 0, &RequestError{Field: "where", Msg: "--where: " + err.Error()}
		}
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, fmt.Errorf("check --where: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SET LOCAL standard_conforming_strings = on"); err != nil {
		return 0, fmt.Errorf("check --where: %w", err)
	}
	from := " FROM " + t.from()
	if expr != "" {
		const prefix = "SELECT ("
		sd, err := tx.Conn().PgConn().Prepare(ctx, "", prefix+expr+")"+from, nil)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr):
			msg := "--where: " + pgErr.Message
			if p := int(pgErr.Position) - len(prefix); pgErr.Position > 0 && p >= 1 && p <= len(expr) {
				msg += fmt.Sprintf(" (at character %d of the expression)", p)
			}
			return 0, &RequestError{Field: "where", Msg: msg}
		case err != nil:
			return 0, fmt.Errorf("check --where: %w", err)
		case len(sd.ParamOIDs) != 0:
			return 0, &RequestError{Field: "where", Msg: "--where: parameters are not allowed"}
		case len(sd.Fields) != 1 || sd.Fields[0].DataTypeOID != pgtype.BoolOID:
			return 0, &RequestError{Field: "where", Msg: "--where: the expression must be a condition (of type boolean), such as status = 'shipped'"}
		}
		from += " WHERE (" + expr + ")"
	}
	var plan []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	var raw []byte
	if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) SELECT 1"+from).Scan(&raw); err != nil {
		return 0, fmt.Errorf("estimate the rows of %s: %w", t, err)
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) == 0 {
		return 0, fmt.Errorf("estimate the rows of %s: unexpected EXPLAIN output", t)
	}
	estimate = int64(plan[0].Plan.Rows)
	if estimate <= exactCountBelow { // small, or never analysed: count
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM (SELECT 1"+from+" LIMIT "+strconv.Itoa(10*exactCountBelow)+") c").Scan(&estimate); err != nil {
			return 0, fmt.Errorf("count the rows of %s: %w", t, err)
		}
	}
	return estimate, nil
}
