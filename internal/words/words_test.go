package words

import "testing"

func TestCount(t *testing.T) {
	for _, c := range []struct {
		n    int
		want string
	}{{0, "0 tables"}, {1, "1 table"}, {2, "2 tables"}} {
		if got := Count(c.n, "table", "tables"); got != c.want {
			t.Errorf("Count(%d) = %q; want %q", c.n, got, c.want)
		}
	}
	if got := Count(uint64(1), "message", "messages"); got != "1 message" {
		t.Errorf("Count(uint64(1)) = %q", got)
	}
}
