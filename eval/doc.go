// Package eval compiles observer conditions and {{ expr }} templates once, with
// github.com/expr-lang/expr, and evaluates them over change events.
//
//	c, err := eval.CompileCondition(`field_changed_to('state', 'paid') && amount >= 500`, eval.Options{})
//	t, err := eval.CompileTemplate(`{"order": "{{ id }}", "total": {{ total }}}`, eval.EscapeJSON, eval.Options{})
//	env := eval.NewEnv(ev, eval.Meta{Entity: "Order"})
//	ok, err := c.Eval(env)
//	body, err := t.RenderJSON(nil, env)
//
// # Names
//
// An expression sees one event through these names:
//
//	event       id ("0/16B3748:3"), lsn, commit_lsn, xid, commit_time (a time),
//	            schema, table, op ("INSERT", ...), old_kind, changed, unavailable (lists)
//	new         the row after the change: column → value; nil when absent
//	old         the row before the change, as much as PostgreSQL sent (see old_kind)
//	key         the replica identity key columns
//	data        new, or old for a DELETE (the original system's after-image)
//	changes     {column: {old, new}} for the columns in event.changed; nil when the
//	            event does not say which columns changed
//	event_type  INSERT, UPDATE, DELETE, TRUNCATE, READ (a snapshot row), or CUSTOM (a
//	            logical decoding message): the observer's event_type names
//	entity      Meta.Entity, else "schema.table"
//	message     {prefix, content, transactional} for a logical decoding message, else nil
//
// Any other name is a column of data, as in the original system: `status ==
// 'shipped'` means `data.status == 'shipped'`. The names above win over columns of the
// same name; a column is always reachable as data.x (or data['x'] when x is not an
// identifier or is an operator word such as `in`).
//
// Dotted paths reach into rows and jsonb values (`data.customer.email`), brackets
// index lists (`data.items[0]`, negative from the end) and objects.
//
// # Missing values are errors
//
// Reading a field the event does not have is an evaluation error naming it
// (ErrMissingField: `field "status" not in data`), never a silent false or nil; the
// same holds for a key a jsonb object lacks and an index out of range. Test presence
// with has_field('f'), or opt out explicitly: `a?.b` is nil when a is null or has no
// field b, and on the left of `??` (`status ?? 'none'`) every step of the path is.
// A column whose unchanged TOAST value PostgreSQL did not send (event.unavailable) is
// always an error (ErrUnavailable): its value exists but is unknown here.
//
// # Values and numbers
//
// Row values are JSON, decoded lazily once per Env: strings, bool, nil, lists
// ([]any) and objects (map[string]any). An integer that fits int64 is an int64; every
// other number (a numeric with a scale, a float, a 30-digit integer) is a Numeric
// that keeps its exact text. Comparisons (== != < <= > >=, in, and the helpers'
// equality) are exact across all of them: 100 == 100.00, 0.1 == 0.10, a float literal
// stands for the decimal it is written as, and two different decimals are never
// equal, whatever their size. A string is never equal to a number (`status == '100'`
// compares strings) and ordering a string against a number is an error. Arithmetic
// and the numeric built-ins (abs, round, sum, ...) compute in float64 like expr's own
// floats; numeric('…') writes an exact literal beyond float64 precision.
//
// # Helpers
//
//	has_field('f')               f is a column of data
//	field_changed('f')           the UPDATE changed f (false for other operations)
//	field_changed_to('f', v)     field_changed('f') && new.f == v
//	field_changed_from('f', v)   field_changed('f') && old.f == v
//	numeric('12.3400')           an exact Numeric
//
// field_changed compares old and new values when the UPDATE has a full old image
// (old_kind full or cached). An unchanged TOAST column is unchanged (PostgreSQL omits
// only those). Without a full old image only replica identity key columns can be
// answered: PostgreSQL sends the old key only when it changed, so under old_kind none
// a key column is unchanged and under old_kind key the keys are compared. Any other
// column is an error (ErrNoOldImage) that says to set REPLICA IDENTITY FULL or enable
// caching — never a silent false. expr's built-ins (len, upper, contains, matches,
// now, ...) are available; an unknown function is a compile error.
//
// # Limits
//
// A condition or placeholder expression is at most MaxExprLen bytes and 64 levels
// deep; a template at most MaxTemplateLen bytes. Conditions must yield a bool.
package eval
