package decoder

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// Error reports a pgoutput message that is truncated, corrupt, out of protocol order or
// of a kind this decoder does not support. MsgType is the message's type byte (0 for an
// empty message) and Offset the byte offset within the message where decoding stopped.
//
// An Error means the stream cannot be trusted past this message: the replication session
// must stop without confirming anything beyond the last fully handled transaction. After
// an Error the Decoder's state is unspecified; start a new session with a new Decoder.
type Error struct {
	MsgType byte
	Offset  int
	Reason  string
	Err     error // the cause, when there is one (io.ErrUnexpectedEOF for truncation)
}

// Error implements error.
func (e *Error) Error() string {
	b := make([]byte, 0, 64+len(e.Reason))
	b = append(b, "decode pgoutput "...)
	if e.MsgType >= 0x20 && e.MsgType < 0x7f {
		b = append(b, '\'', e.MsgType, '\'')
	} else {
		b = append(b, "0x"...)
		b = strconv.AppendUint(b, uint64(e.MsgType), 16)
	}
	b = append(b, " message at offset "...)
	b = strconv.AppendInt(b, int64(e.Offset), 10)
	b = append(b, ": "...)
	b = append(b, e.Reason...)
	if e.Err != nil {
		b = append(b, ": "...)
		b = append(b, e.Err.Error()...)
	}
	return string(b)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrInvalidUTF8 is the cause (ValueError.Err) when a text value, column name, message
// prefix or origin name is not valid UTF-8 (possible in a SQL_ASCII database). The
// decoder never alters such bytes: the event is refused instead.
var ErrInvalidUTF8 = errors.New("invalid UTF-8")

// ErrKeyUnavailable is the cause (ValueError.Err) when a replica identity key column of
// an UPDATE is an unchanged TOAST value that PostgreSQL did not send and no old image
// holds it: the decoder never guesses a key.
var ErrKeyUnavailable = errors.New("key column not sent (unchanged TOAST) and no old image holds it")

// ErrBinaryUnsupported is the cause (ValueError.Err) when a value arrives in binary
// format (pgoutput option binary=true) for a type whose binary form this decoder does
// not decode, or with the wrong length for its type. Stream in text format (the
// default) to avoid it.
var ErrBinaryUnsupported = errors.New("binary format not supported for this type")

// ValueError reports one change that cannot be turned into an event without altering
// data (see ErrInvalidUTF8, ErrKeyUnavailable, ErrBinaryUnsupported). The message was
// well formed and consumed: the Decoder stays consistent (the change's ordinal is used
// up), so the session can hand the change to the dead-letter queue under ID and go on.
type ValueError struct {
	ID     lsn.Position // the id the event would have had
	LSN    lsn.LSN      // WAL position of the change
	Schema string
	Table  string
	Column string // the offending column, or "" (message prefix, origin, relation name)
	Err    error
}

// Error implements error.
func (e *ValueError) Error() string {
	s := fmt.Sprintf("decode change %s of %q.%q", e.ID, e.Schema, e.Table)
	if e.Column != "" {
		s += fmt.Sprintf(" column %q", e.Column)
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *ValueError) Unwrap() error { return e.Err }

// TooLargeError reports a change whose decoded values exceed Options.MaxEventBytes. The
// decoder stops decoding the change as soon as the limit is passed, so Size is a lower
// bound of the decoded size. Like ValueError it concerns one change only: the Decoder
// stays consistent and the session can send the change to the dead-letter queue.
type TooLargeError struct {
	ID     lsn.Position // the id the event would have had
	LSN    lsn.LSN      // WAL position of the change
	Schema string
	Table  string
	Size   int // decoded bytes reached when decoding stopped (at least Limit+1)
	Limit  int
	// Key holds the values of the change's key columns when they could be decoded
	// on their own (nil otherwise), so the row can be read again by key.
	Key *Row
}

// Error implements error.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("decode change %s of %q.%q: decoded values exceed %d bytes (reached %d)",
		e.ID, e.Schema, e.Table, e.Limit, e.Size)
}
