package decoder

import (
	"encoding/binary"
	"io"
)

// reader reads the fields of one pgoutput message. Every read checks the remaining
// length first; the first failure is kept in err and makes later reads return zero
// values, so parsers can read a whole message and check err once.
type reader struct {
	buf []byte
	off int
	typ byte
	err *Error
}

func newReader(data []byte) reader {
	r := reader{buf: data}
	if len(data) > 0 {
		r.typ = data[0]
	}
	return r
}

// fail records the first error at the current offset.
func (r *reader) fail(reason string, cause error) {
	if r.err == nil {
		r.err = &Error{MsgType: r.typ, Offset: r.off, Reason: reason, Err: cause}
	}
}

func (r *reader) remaining() int { return len(r.buf) - r.off }

// need reports whether n more bytes can be read, recording a truncation error if not.
func (r *reader) need(n int, what string) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || r.remaining() < n {
		r.fail("truncated "+what, io.ErrUnexpectedEOF)
		return false
	}
	return true
}

func (r *reader) uint8(what string) byte {
	if !r.need(1, what) {
		return 0
	}
	v := r.buf[r.off]
	r.off++
	return v
}

func (r *reader) uint16(what string) uint16 {
	if !r.need(2, what) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.buf[r.off:])
	r.off += 2
	return v
}

func (r *reader) uint32(what string) uint32 {
	if !r.need(4, what) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.buf[r.off:])
	r.off += 4
	return v
}

func (r *reader) uint64(what string) uint64 {
	if !r.need(8, what) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.buf[r.off:])
	r.off += 8
	return v
}

// bytes returns the next n bytes, aliasing the message.
func (r *reader) bytes(n int, what string) []byte {
	if !r.need(n, what) {
		return nil
	}
	v := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

// cstring returns the bytes of a NUL-terminated string (without the NUL), aliasing the
// message.
func (r *reader) cstring(what string) []byte {
	if r.err != nil {
		return nil
	}
	for i := r.off; i < len(r.buf); i++ {
		if r.buf[i] == 0 {
			v := r.buf[r.off:i:i]
			r.off = i + 1
			return v
		}
	}
	r.fail("unterminated "+what, io.ErrUnexpectedEOF)
	return nil
}

// end records an error when bytes are left over after the last field.
func (r *reader) end() {
	if r.err == nil && r.remaining() != 0 {
		r.fail("unexpected trailing bytes", nil)
	}
}
