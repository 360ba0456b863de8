package lsn

import (
	"errors"
	"testing"
)

func TestParseFormat(t *testing.T) {
	f := func(in string, want LSN, text string) {
		t.Helper()
		got, err := Parse(in)
		if err != nil {
			t.Fatalf("unexpected error for %q: %v", in, err)
		}
		if got != want {
			t.Fatalf("unexpected LSN for %q; got %d; want %d", in, got, want)
		}
		if s := got.String(); s != text {
			t.Fatalf("unexpected text for %q; got %q; want %q", in, s, text)
		}
	}
	f("0/0", 0, "0/0")
	f("16/B374D848", 0x16B374D848, "16/B374D848")
	f("16/b374d848", 0x16B374D848, "16/B374D848")
	f("0/16B3748", 0x16B3748, "0/16B3748")
	f("FFFFFFFF/FFFFFFFF", ^LSN(0), "FFFFFFFF/FFFFFFFF")
	f("00000001/00000000", 1<<32, "1/0")
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "/", "0/", "/0", "0", "0//0", "g/0", "0/0x1", "123456789/0", "0/123456789", "-1/0", " 0/0", "0/0 "} {
		if _, err := Parse(in); !errors.Is(err, ErrSyntax) {
			t.Fatalf("unexpected error for %q; got %v; want ErrSyntax", in, err)
		}
	}
}

func TestCompareSub(t *testing.T) {
	a, b := LSN(0x100), LSN(0x180)
	if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Fatalf("unexpected Compare results")
	}
	if d := b.Sub(a); d != 0x80 {
		t.Fatalf("unexpected distance; got %d; want %d", d, 0x80)
	}
	if d := a.Sub(b); d != 0 {
		t.Fatalf("unexpected distance for reversed operands; got %d; want 0", d)
	}
}

func TestTextMarshaling(t *testing.T) {
	var l LSN
	if err := l.UnmarshalText([]byte("1/2A")); err != nil {
		t.Fatal(err)
	}
	b, _ := l.MarshalText()
	if string(b) != "1/2A" {
		t.Fatalf("unexpected text; got %q; want %q", b, "1/2A")
	}
	if err := l.UnmarshalText([]byte("nope")); err == nil {
		t.Fatalf("expected an error for invalid text")
	}
}

func TestPosition(t *testing.T) {
	p, err := ParsePosition("0/16B3748:3")
	if err != nil {
		t.Fatal(err)
	}
	if p.Commit != 0x16B3748 || p.Ord != 3 {
		t.Fatalf("unexpected position %+v", p)
	}
	if s := p.String(); s != "0/16B3748:3" {
		t.Fatalf("unexpected text; got %q", s)
	}
	for _, in := range []string{"0/16B3748", "0/16B3748:", "0/16B3748:-1", "x:1", "0/1:4294967296"} {
		if _, err := ParsePosition(in); err == nil {
			t.Fatalf("expected an error for %q", in)
		}
	}
	order := []Position{{1, 0}, {1, 1}, {1, 2}, {2, 0}, {2, 7}}
	for i := range order {
		for j := range order {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := order[i].Compare(order[j]); got != want {
				t.Fatalf("unexpected Compare(%v, %v); got %d; want %d", order[i], order[j], got, want)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF", "1/", "a/b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Parse(s)
		if err != nil {
			return
		}
		back, err := Parse(l.String())
		if err != nil {
			t.Fatalf("formatted LSN %q does not parse: %v", l.String(), err)
		}
		if back != l {
			t.Fatalf("round trip changed the value; got %v; want %v", back, l)
		}
	})
}

func FuzzPositionRoundTrip(f *testing.F) {
	f.Add(uint64(0x16B3748), uint32(3))
	f.Add(uint64(0), uint32(0))
	f.Fuzz(func(t *testing.T, commit uint64, ord uint32) {
		p := Position{LSN(commit), ord}
		q, err := ParsePosition(p.String())
		if err != nil || q != p {
			t.Fatalf("round trip of %v; got %v, %v", p, q, err)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("16/B374D848"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendText(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 32)
	l := LSN(0x16B374D848)
	for b.Loop() {
		buf = l.AppendText(buf[:0])
	}
}

func BenchmarkPositionAppendText(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 32)
	p := Position{0x16B374D848, 12}
	for b.Loop() {
		buf = p.AppendText(buf[:0])
	}
}
