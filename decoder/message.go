package decoder

import (
	"io"

	"fmt"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Message is the content of a logical decoding message (pg_logical_emit_message). As a
// parsed protocol message (Parse) it is a Msg of kind KindMessage.
type Message struct {
	Prefix        string
	Content       []byte
	Transactional bool
	// LSN is the WAL position of the message record. For a non-transactional message it
	// is also the commit part of the event id.
	LSN lsn.LSN
}

// Kind returns KindMessage.
func (*Message) Kind() Kind { return KindMessage }

func parseMessage(r *reader) Message {
	var m Message
	m.Transactional = r.uint8("flags")&1 != 0
	m.LSN = r.lsn("message LSN")
	m.Prefix = string(r.cstring("prefix"))
	n := int32(r.uint32("content length"))
	if r.err == nil && (n < 0 || int(n) > r.remaining()) {
		r.off -= 4
		r.fail("content length exceeds message length", io.ErrUnexpectedEOF)
	}
	m.Content = r.bytes(int(n), "content")
	r.end()
	return m
}

// messageBlock allocates a message event with its content descriptor at once.
type messageBlock struct {
	ev  Event
	msg Message
}

// message builds the event of a logical decoding message parsed by r. A transactional
// message belongs to the current transaction and takes the next ordinal. A
// non-transactional one is sent on its own, outside any Begin/Commit: its id is
// {Commit: message LSN, Ord: 1}, its Xid 0, its CommitTime zero and it has no origin.
func (d *Decoder) message(r *reader, walStart lsn.LSN, m *Message, dst []*Event) ([]*Event, error) {
	if r.err != nil {
		return dst, nil
	}
	if m.Transactional && !d.inTx {
		r.protocol("transactional Message outside a transaction")
		return dst, nil
	}
	b := &messageBlock{}
	ev := &b.ev
	ev.LSN, ev.Op = walStart, OpMessage
	if m.Transactional {
		ev.ID = d.asm.next()
		ev.Xid, ev.CommitTime, ev.Origin = d.asm.begin.Xid, d.asm.begin.CommitTime, d.asm.origin
	} else {
		ev.ID = lsn.Position{Commit: m.LSN, Ord: 1}
	}
	if limit := d.opts.MaxEventBytes; limit > 0 && len(m.Content) > limit {
		return dst, &TooLargeError{ID: ev.ID, LSN: walStart, Size: len(m.Content), Limit: limit}
	}
	if !utf8.ValidString(m.Prefix) {
		return dst, &ValueError{ID: ev.ID, LSN: walStart, Err: fmt.Errorf("message prefix: %w", ErrInvalidUTF8)}
	}
	if !utf8.ValidString(ev.Origin) {
		return dst, &ValueError{ID: ev.ID, LSN: walStart, Err: fmt.Errorf("origin name: %w", ErrInvalidUTF8)}
	}
	b.msg = *m
	b.msg.Content = append([]byte(nil), m.Content...)
	ev.Message = &b.msg
	return append(dst, ev), nil
}
