// Package decoder turns pgoutput (protocol version 1) messages into change events.
//
// It is the pure core of the service: standard library only (plus lsn), no I/O, and it
// never panics on any input. Every length is checked against the bytes that remain
// before anything is read or allocated, so a corrupt length cannot cause a large
// allocation; the package is fuzzed (FuzzDecode, FuzzDecodeStream).
//
// # Two layers
//
// Parse parses one message without state into a typed Msg (*Begin, *Commit, *Origin,
// *Relation, *Type, *Insert, *Update, *Delete, *Truncate, *Message), using PostgreSQL's
// vocabulary (FinalLSN, CommitLSN, EndLSN, Xid, RelationID).
//
// A Decoder holds the state of one replication session (relation and type caches, the
// current transaction) and turns each message into events. The replication session
// calls Decode for every XLogData message, in stream order, from the goroutine that
// owns the connection:
//
//	evs, kind, err := dec.Decode(xld.WALStart, xld.WALData, evs[:0])
//	switch {
//	case err != nil: // *Error: stop; *ValueError, *TooLargeError: dead-letter the change
//	case kind == decoder.KindBegin: // dec.Begin() has FinalLSN (the commit LSN), Xid, CommitTime
//	case kind == decoder.KindCommit: // dec.LastCommit().EndLSN is the position to confirm
//	}
//
// WALData may alias the connection's read buffer: events copy every byte they keep.
//
// # Events
//
// Insert, Update and Delete give one event each, Truncate one per truncated relation,
// a logical decoding message one event of OpMessage. The event id is the commit LSN of
// the transaction (Begin.FinalLSN) with the ordinal of the change in the transaction,
// counting from 1 over every event the transaction produces, in stream order. A
// non-transactional message has the id {its LSN, 1}, Xid 0 and a zero CommitTime.
//
// The Decoder hands every row change to its Assembler, which decodes the values of the
// tuples, fills unchanged TOAST values of the new tuple from the old one where it has
// them, assembles the images and the key, and gives the event its id.
//
// # Events from table rows
//
// A reader of table rows (a snapshot) builds events through the same Assembler: it
// describes the table from the catalog with NewRelation (column names, type OIDs, key
// columns), starts the ids with Assembler.Begin and turns each row, read in the text
// format, into an event of OpRead with Assembler.Read. Values are decoded as in the
// stream, so a row read from a table and the same row streamed have the same JSON.
//
// Rows (Event.New, Old, Key) hold typed JSON values; docs/events.md is the contract.
// In short: integers, floats and numeric are JSON numbers with the digits PostgreSQL
// sent (NaN and infinities as strings); bool is true/false; json and jsonb are embedded
// with the whitespace outside strings removed; bytea is a base64 string; timestamp,
// timestamptz and timetz are ISO 8601 strings with offsets written "Z" or "±hh:mm";
// arrays are nested JSON arrays; every other type (enums, domains, composites,
// intervals, unknown OIDs) is its PostgreSQL text as a JSON string. Text that does not
// have the form the decoder expects for its type (infinity, BC dates, arrays with
// explicit bounds, a DateStyle other than ISO) is passed unchanged as a JSON string.
//
// The decoder expects the replication connection to use PostgreSQL's defaults for
// output: DateStyle ISO, IntervalStyle postgres, extra_float_digits 1 (any TimeZone).
//
// # Errors
//
// A *Error names the message type and byte offset of a truncated, corrupt or
// out-of-order message: the session must stop. A *ValueError (invalid UTF-8, an
// unavailable key, an unsupported binary value) or *TooLargeError (Options.
// MaxEventBytes) concerns one change: it carries the change's id and the Decoder goes
// on with the next message.
package decoder
