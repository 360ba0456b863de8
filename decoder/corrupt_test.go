package decoder

import (
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// sample is one captured message and the stream frames that lead up to it.
type sample struct {
	name   string
	before []frame
	msg    frame
}

// samples picks from the captured streams one message of every kind (and of every
// tuple shape of Update and Delete).
func samples(t *testing.T) []sample {
	t.Helper()
	var out []sample
	seen := map[string]bool{}
	for _, name := range []string{"ops", "types", "identity", "toast"} {
		frames := readStream(t, name)
		for i, f := range frames {
			key := string(f.data[:1])
			if (f.data[0] == 'U' || f.data[0] == 'D') && len(f.data) > 5 {
				key += string(f.data[5:6]) // 'K', 'O' or 'N'
			}
			if f.data[0] == 'M' {
				key += string(rune('0' + f.data[1]))
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, sample{name: name + "/" + Kind(f.data[0]).String() + "/" + key, before: frames[:i], msg: f})
		}
	}
	for _, want := range []string{"B", "C", "O", "R", "Y", "I", "UN", "UK", "UO", "DK", "DO", "T", "M0", "M1"} {
		if !seen[want] {
			t.Fatalf("captured streams hold no %q message", want)
		}
	}
	return out
}

func primed(t testing.TB, before []frame) *Decoder {
	t.Helper()
	d := New(Options{KeyColumns: goldenKeyColumns})
	for _, f := range before {
		if _, _, err := d.Decode(f.walStart, f.data, nil); err != nil {
			t.Fatalf("prime decoder: %v", err)
		}
	}
	return d
}

// TestTruncatedMessages cuts every kind of message at every offset: each prefix must
// give a *Error naming the message type and an offset within the prefix.
func TestTruncatedMessages(t *testing.T) {
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			d := primed(t, s.before)
			if _, _, err := d.Decode(s.msg.walStart, s.msg.data, nil); err != nil {
				t.Fatalf("whole message: %v", err)
			}
			for n := 0; n < len(s.msg.data); n++ {
				d := primed(t, s.before)
				prefix := s.msg.data[:n:n]
				evs, _, err := d.Decode(s.msg.walStart, prefix, nil)
				var de *Error
				if !errors.As(err, &de) {
					t.Fatalf("prefix of %d bytes: unexpected error; got %v (%d events); want *Error", n, err, len(evs))
				}
				wantType := byte(0)
				if n > 0 {
					wantType = s.msg.data[0]
				}
				if de.MsgType != wantType || de.Offset < 0 || de.Offset > n {
					t.Fatalf("prefix of %d bytes: unexpected error %+v", n, de)
				}
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("prefix of %d bytes: unexpected cause; got %v; want io.ErrUnexpectedEOF", n, err)
				}
				if _, err := Parse(prefix); !errors.As(err, &de) {
					t.Fatalf("Parse of a %d-byte prefix: unexpected error %v", n, err)
				}
			}
		})
	}
}

// TestCorruptMessages checks protocol-order and content errors.
func TestCorruptMessages(t *testing.T) {
	frames := readStream(t, "ops")
	f := func(name string, before []frame, data []byte, wantType byte) {
		t.Helper()
		d := primed(t, before)
		_, _, err := d.Decode(1, data, nil)
		var de *Error
		if !errors.As(err, &de) || de.MsgType != wantType {
			t.Fatalf("%s: unexpected error; got %v; want *Error for %q", name, err, wantType)
		}
	}
	begin, insert := frames[0].data, []byte(nil)
	for _, fr := range frames {
		if fr.data[0] == 'I' {
			insert = fr.data
			break
		}
	}
	f("unknown type", nil, []byte("S\x00\x00"), 'S')
	f("insert outside transaction", frames[:4], insert, 'I')
	f("begin inside transaction", frames[:1], begin, 'B')
	f("commit outside transaction", nil, frames[3].data, 'C')
	f("trailing bytes", nil, append(append([]byte(nil), begin...), 0), 'B')
	unknownRel := append([]byte(nil), insert...)
	binary.BigEndian.PutUint32(unknownRel[1:], 999999)
	f("unknown relation", frames[:2], unknownRel, 'I')
	badKind := append([]byte(nil), insert...)
	badKind[5] = 'X'
	f("bad tuple type", frames[:2], badKind, 'I')
	commit := append([]byte(nil), frames[3].data...)
	binary.BigEndian.PutUint64(commit[2:], 12345)
	f("commit LSN mismatch", frames[:1], commit, 'C')
}

// TestHugeLengthsDoNotAllocate feeds short messages whose length fields claim up to
// 2 GB: each must fail without allocating anything near the claimed size.
func TestHugeLengthsDoNotAllocate(t *testing.T) {
	pad := make([]byte, 100)
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	begin := cat([]byte("B"), make([]byte, 20))
	rel := cat([]byte("R"), be32(1), []byte("s\x00t\x00d"), be16(1), []byte{1}, []byte("c\x00"), be32(25), be32(0xffffffff))
	cases := map[string][]byte{
		"tuple value length": cat([]byte("I"), be32(1), []byte("N"), be16(1), []byte("t"), be32(0x7fffffff), pad),
		"tuple column count": cat([]byte("I"), be32(1), []byte("N"), be16(0xffff), pad),
		"relation columns":   cat([]byte("R"), be32(2), []byte("s\x00t\x00d"), be16(0xffff), pad),
		"truncate relations": cat([]byte("T"), be32(0x7fffffff), []byte{0}, pad),
		"message content":    cat([]byte("M\x01"), make([]byte, 8), []byte("p\x00"), be32(0x7fffffff), pad),
	}
	for name, data := range cases {
		d := New(Options{})
		for _, m := range [][]byte{rel, begin} {
			if _, _, err := d.Decode(1, m, nil); err != nil {
				t.Fatalf("prime: %v", err)
			}
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, err := d.Decode(lsn.LSN(2), data, nil)
		runtime.ReadMemStats(&after)
		var de *Error
		if !errors.As(err, &de) {
			t.Fatalf("%s: unexpected error; got %v; want *Error", name, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
			t.Fatalf("%s: decoding a %d-byte message allocated %d bytes", name, len(data), n)
		}
	}
}
