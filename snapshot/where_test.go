package snapshot

import "testing"

func TestCheckWhereText(t *testing.T) {
	ok := []string{
		"status = 'shipped'",
		"total > 100 AND (customer_id IN (1, 2, 3))",
		"note = 'a;b -- c /* d'",                // inside a string
		"note = 'it''s'",                        // doubled quote
		`note = E'it\'s; (not'`,                 // backslash escape in E''
		`"weird;name" = 1`,                      // quoted identifier
		`"a""b" IS NULL`,                        // doubled quote in an identifier
		"body = $$x; ) -- $$",                   // dollar quoting
		"body = $q$ $$ ; $q$",                   // tagged dollar quoting
		"col$1 = 2",                             // $ inside an identifier
		"U&'d\\0061t' = x",                      // U& string (no backslash escapes)
		"created_at > now() - interval '1 day'", // stable function
		"x = B'101' OR y = X'1F'",
	}
	for _, s := range ok {
		if err := checkWhereText(s); err != nil {
			t.Errorf("checkWhereText(%q): unexpected error %v", s, err)
		}
	}
	bad := []string{
		"",
		"   ",
		"1=1; DROP TABLE orders",
		"1=1) UNION SELECT secret FROM keys WHERE (true",
		"true) OR (true",
		"1=1 --",
		"1=1 /* hide */",
		"id = $1",
		"(1=1",
		"note = 'unterminated",
		`note = 'a\' ) OR (true`, // no backslash escapes in '...': the string ends at \'
		`"unterminated = 1`,
		"x = $tag$never closed",
		"x = $ 1",
		"x \\ y",
		"1=1)--",
	}
	for _, s := range bad {
		if err := checkWhereText(s); err == nil {
			t.Errorf("checkWhereText(%q): no error", s)
		}
	}
}
