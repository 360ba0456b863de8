package snapshot

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/cdc"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// reader reads one table's chunks on a connection of its own, made from the same
// configuration as the replication connection: the same session settings, so values
// have the same text (and JSON) as in the stream.
type reader struct {
	conn  *pgx.Conn
	t     *table
	rel   *decoder.Relation
	where string
	size  int
	// maxBytes ends a chunk early once its events hold that much (≤ 0: no bound): a
	// chunk of wide rows stays within the pipeline's budget.
	maxBytes int64
	asm      *decoder.Assembler
	first    string // the query of the first chunk
	next     string // the query of the chunks after a key
}

// connect opens a connection for snapshots: standard_conforming_strings on, which
// the --where check assumes.
func connect(ctx context.Context, cc *pgx.ConnConfig) (*pgx.Conn, error) {
	cfg := cc.Copy()
	cfg.RuntimeParams["standard_conforming_strings"] = "on"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect for the snapshot: %w", err)
	}
	return conn, nil
}

func newReader(conn *pgx.Conn, t *table, rel *decoder.Relation, where string, size int, maxEventBytes int) *reader {
	cols := make([]string, len(t.Desc.Columns))
	for i, c := range t.Desc.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	keys := make([]string, len(t.ChunkKey))
	params := make([]string, len(t.ChunkKey))
	for i, k := range t.ChunkKey {
		keys[i] = pgx.Identifier{k}.Sanitize()
		params[i] = "$" + strconv.Itoa(i+1)
	}
	sel := "SELECT " + strings.Join(cols, ", ") + " FROM " + t.from()
	order := " ORDER BY " + strings.Join(keys, ", ") + " LIMIT " + strconv.Itoa(size)
	cond := ""
	if where != "" {
		cond = " AND (" + where + ")"
	}
	r := &reader{conn: conn, t: t, rel: rel, where: where, size: size, asm: decoder.NewAssembler(decoder.Options{MaxEventBytes: maxEventBytes})}
	r.first = sel + " WHERE true" + cond + order
	r.next = sel + " WHERE (" + strings.Join(keys, ", ") + ") > (" + strings.Join(params, ", ") + ")" + cond + order
	return r
}

// read is one chunk read from the table, before its high watermark.
type read struct {
	events      []*decoder.Event
	keyOf       []string
	poison      []cdc.Poison
	rows        int      // rows read (events and poison)
	cut         bool     // ended before size rows by maxBytes: more rows may follow
	lastKey     []string // text of the key of the last row
	fingerprint []byte   // hash of the keys of the rows, in order
	snap        xidSnapshot
	low         lsn.LSN // the low watermark
}

// emit writes a watermark: a transactional logical decoding message, committed with
// synchronous_commit on so that the stream gets it at once. It returns the message's
// LSN.
func (r *reader) emit(ctx context.Context, kind string, id, no int64, nonce string) (lsn.LSN, error) {
	content := fmt.Sprintf("%s %d %d %s", kind, id, no, nonce)
	res, err := r.conn.PgConn().Exec(ctx, "BEGIN; SET LOCAL synchronous_commit = on; SELECT pg_logical_emit_message(true, '"+
		Prefix+"', '"+content+"')::text; COMMIT").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("write the %s watermark: %w", kind, err)
	}
	if len(res) != 4 || len(res[2].Rows) != 1 || len(res[2].Rows[0]) != 1 {
		return 0, fmt.Errorf("write the %s watermark: unexpected answer", kind)
	}
	return lsn.Parse(string(res[2].Rows[0][0]))
}

// errTableChanged ends a snapshot's run when the table's definition changed since it
// was described: the manager starts it again (after its last completed chunk) with
// the table described anew.
var errTableChanged = errors.New("the table's definition changed (ALTER TABLE): describing it again")

// newNonce returns a random token that identifies one attempt at a chunk in its
// watermarks.
func newNonce() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("make a watermark nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// readRows writes the low watermark, then reads up to size rows after the key after
// (nil: from the first row) in a repeatable-read, read-only transaction, with the
// transaction's snapshot. The events have the ids {0/0, 1..}: the caller sets the base.
func (r *reader) readRows(ctx context.Context, c *chunk, id, no int64, after []string) (*read, error) {
	low, err := r.emit(ctx, "low", id, no, c.nonce)
	if err != nil {
		return nil, err
	}
	tx, err := r.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", no, r.t, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// The lock every SELECT takes, taken first so that no ALTER TABLE commits between
	// the check of the table's definition and the read; a queue of locks behind an
	// ALTER waiting for a long transaction ends the chunk (read again later).
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '10s'; LOCK TABLE "+r.t.from()+" IN ACCESS SHARE MODE"); err != nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", no, r.t, err)
	}
	var snapText string
	var readAt time.Time
	if err := tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text, now()").Scan(&snapText, &readAt); err != nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", no, r.t, err)
	}
	out := &read{low: low}
	if out.snap, err = parseSnapshot(snapText); err != nil {
		return nil, err
	}
	if sig, err := signature(ctx, tx, r.t.OID); err != nil {
		return nil, err
	} else if sig != r.t.sig {
		return nil, errTableChanged
	}
	sql, params := r.first, [][]byte(nil)
	if after != nil {
		sql = r.next
		for _, k := range after {
			params = append(params, []byte(k))
		}
	}
	r.asm.Begin(decoder.Begin{CommitTime: readAt})
	h := sha256.New()
	h.Write([]byte(r.t.sig)) // another definition of the table gives other ids
	var key [][]byte
	rr := tx.Conn().PgConn().ExecParams(ctx, sql, params, nil, nil, nil)
	var bytes int64
	for rr.NextRow() {
		if r.maxBytes > 0 && bytes >= r.maxBytes {
			out.cut = true // the rest of the LIMIT is read and discarded by Close
			break
		}
		values := rr.Values()
		key = key[:0]
		for _, j := range r.t.KeyIndex {
			key = append(key, values[j])
			h.Write(binary.AppendUvarint(nil, uint64(len(values[j]))))
			h.Write(values[j])
		}
		out.rows++
		ev, err := r.asm.Read(r.rel, values)
		if p, ok := poisonOf(err); ok {
			out.poison = append(out.poison, p)
		} else if err != nil {
			rr.Close()
			return nil, fmt.Errorf("read chunk %d of %s: %w", no, r.t, err)
		} else {
			out.events = append(out.events, ev)
			out.keyOf = append(out.keyOf, r.t.readKey(ev.New))
			bytes += int64(ev.Size())
		}
		if len(key) > 0 {
			out.lastKey = out.lastKey[:0]
			for _, k := range key {
				out.lastKey = append(out.lastKey, string(k))
			}
		}
	}
	if _, err := rr.Close(); err != nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", no, r.t, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("read chunk %d of %s: %w", no, r.t, err)
	}
	out.fingerprint = h.Sum(nil)
	return out, nil
}

// setBase gives the chunk's events and poison their ids: {base, ordinal}.
func (rd *read) setBase(base lsn.LSN) {
	for _, ev := range rd.events {
		ev.ID.Commit, ev.LSN = base, base
	}
	for i := range rd.poison {
		rd.poison[i].ID.Commit, rd.poison[i].LSN = base, base
	}
}

// poisonOf recognises the errors of Assembler.Read that concern one row only.
func poisonOf(err error) (cdc.Poison, bool) {
	var tl *decoder.TooLargeError
	if errors.As(err, &tl) {
		return cdc.Poison{ID: tl.ID, LSN: tl.LSN, Schema: tl.Schema, Table: tl.Table, Reason: "too_large", Err: err}, true
	}
	var ve *decoder.ValueError
	if errors.As(err, &ve) {
		return cdc.Poison{ID: ve.ID, LSN: ve.LSN, Schema: ve.Schema, Table: ve.Table, Reason: "invalid_value", Err: err}, true
	}
	return cdc.Poison{}, false
}

// baseOf returns the base of the ids of a chunk whose low watermark is at low: the
// position just before it. WAL records start and end on 8-byte boundaries, so no
// transaction commits at that position and no message is there: snapshot ids never
// equal the id of a streamed change.
func baseOf(low lsn.LSN) lsn.LSN { return low - 1 }
