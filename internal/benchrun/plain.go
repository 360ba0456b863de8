package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// The plain reader is the floor the service is measured against: a minimal pglogrepl
// loop (pgoutput protocol 1) that writes every row change as one NDJSON line
// {"lsn","table","op","new":{column: text value}} to a file through a buffered writer,
// never fsyncs, and confirms the position of each commit it has written every
// status interval. No matching, no dedup, no row cache, no checkpoints, no retries.
// It runs as its own process (benchrun -plain-reader ...) so that its peak RSS and
// CPU are measured like the other consumers'.

// plainReaderMain is the child process: it reads slot from conninfo up to endpos,
// writing to out, and exits 0 once the file holds everything up to endpos. With post
// set (the live scenario) it instead POSTs every row change in turn to that URL, one
// request per change, and runs until SIGTERM (endpos is then ignored).
func plainReaderMain(conninfo, slot, endpos, out, post string, status time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	end := pglogrepl.LSN(math.MaxUint64)
	if post == "" {
		var err error
		if end, err = pglogrepl.ParseLSN(endpos); err != nil {
			return err
		}
	}
	conn, err := pgconn.Connect(ctx, conninfo)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	r := &plain{conn: conn, end: end, status: status, post: post,
		rels: map[uint32]*pglogrepl.RelationMessage{}, next: time.Now().Add(status)}
	var f *os.File
	if post == "" {
		if f, err = os.Create(out); err != nil {
			return err
		}
		defer f.Close()
		r.w = bufio.NewWriterSize(f, 256<<10)
	} else {
		r.client = &http.Client{Timeout: 30 * time.Second}
	}
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'pub'"},
	})
	if err != nil {
		return err
	}
	for r.written < end {
		if !time.Now().Before(r.next) {
			if err := r.sendStatus(ctx); err != nil {
				return err
			}
		}
		rctx, cancel := context.WithDeadline(ctx, r.next)
		raw, err := conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil && post != "" {
				return nil // SIGTERM: the live scenario is over
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		if err := r.handle(raw); err != nil {
			return err
		}
	}
	if err := r.sendStatus(ctx); err != nil {
		return err
	}
	return f.Close()
}

// plain is the plain reader's state.
type plain struct {
	conn    *pgconn.PgConn
	w       *bufio.Writer // file mode
	post    string        // post mode: the URL every change is POSTed to
	client  *http.Client
	commit  time.Time // commit time of the transaction being read (post mode)
	end     pglogrepl.LSN
	status  time.Duration
	next    time.Time // next status update
	rels    map[uint32]*pglogrepl.RelationMessage
	written pglogrepl.LSN // end of the last commit in the file
	line    []byte
}

// sendStatus flushes the file and confirms what it holds.
func (r *plain) sendStatus(ctx context.Context) error {
	if r.w != nil {
		if err := r.w.Flush(); err != nil {
			return err
		}
	}
	r.next = time.Now().Add(r.status)
	return pglogrepl.SendStandbyStatusUpdate(ctx, r.conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: r.written})
}

func (r *plain) handle(raw pgproto3.BackendMessage) error {
	msg, ok := raw.(*pgproto3.CopyData)
	if !ok {
		if e, ok := raw.(*pgproto3.ErrorResponse); ok {
			return pgconn.ErrorResponseToPgError(e)
		}
		return nil
	}
	switch msg.Data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
		if err != nil {
			return err
		}
		if ka.ServerWALEnd >= r.end && r.written < ka.ServerWALEnd {
			// Nothing left to decode up to endpos (its last commit is written).
			r.written = max(r.written, r.end)
		}
		if ka.ReplyRequested {
			r.next = time.Now()
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
		if err != nil {
			return err
		}
		lm, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			return err
		}
		return r.change(xld.WALStart, lm)
	}
	return nil
}

func (r *plain) change(at pglogrepl.LSN, lm pglogrepl.Message) error {
	var op string
	var rel uint32
	var t *pglogrepl.TupleData
	switch m := lm.(type) {
	case *pglogrepl.RelationMessage:
		r.rels[m.RelationID] = m
		return nil
	case *pglogrepl.BeginMessage:
		r.commit = m.CommitTime
		return nil
	case *pglogrepl.InsertMessage:
		op, rel, t = "INSERT", m.RelationID, m.Tuple
	case *pglogrepl.UpdateMessage:
		op, rel, t = "UPDATE", m.RelationID, m.NewTuple
	case *pglogrepl.DeleteMessage:
		op, rel, t = "DELETE", m.RelationID, m.OldTuple
	case *pglogrepl.CommitMessage:
		r.written = m.TransactionEndLSN
		return nil
	default:
		return nil
	}
	if r.post != "" {
		r.line = appendLine(r.line[:0], at, r.commit, r.rels[rel], op, t)
		return r.postLine()
	}
	r.line = appendLine(r.line[:0], at, time.Time{}, r.rels[rel], op, t)
	_, err := r.w.Write(r.line)
	return err
}

// postLine sends the current line as one POST and waits for a 2xx answer.
func (r *plain) postLine() error {
	resp, err := r.client.Post(r.post, "application/json", bytes.NewReader(r.line))
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post: %s", resp.Status)
	}
	return nil
}

// appendLine appends one NDJSON line: column values as JSON strings (text format), and
// the commit time when it is not zero.
func appendLine(b []byte, at pglogrepl.LSN, commit time.Time, rel *pglogrepl.RelationMessage, op string, t *pglogrepl.TupleData) []byte {
	b = append(b, `{"lsn":"`...)
	b = append(b, at.String()...)
	if !commit.IsZero() {
		b = append(b, `","commit_time":"`...)
		b = commit.UTC().AppendFormat(b, time.RFC3339Nano)
	}
	b = append(b, `","table":`...)
	if rel != nil {
		b = strconv.AppendQuote(b, rel.Namespace+"."+rel.RelationName)
	} else {
		b = append(b, `""`...)
	}
	b = append(b, `,"op":"`...)
	b = append(b, op...)
	b = append(b, `","new":{`...)
	if t != nil && rel != nil {
		for i, c := range t.Columns {
			if i > 0 {
				b = append(b, ',')
			}
			if i < len(rel.Columns) {
				b = strconv.AppendQuote(b, rel.Columns[i].Name)
			} else {
				b = append(b, `"?"`...)
			}
			b = append(b, ':')
			switch c.DataType {
			case 't':
				b = strconv.AppendQuote(b, string(c.Data))
			default:
				b = append(b, "null"...)
			}
		}
	}
	return append(b, "}}\n"...)
}

// plainReader runs the plain reader as a child process of this binary on slot up to
// endpos and returns once it has written everything up to there.
func plainReader(ctx context.Context, srv *pgtest.Server, db, slot, endpos string) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	dir, err := os.MkdirTemp("", "benchrun-plain")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s replication=database", srv.Port, db)
	cmd := exec.CommandContext(ctx, self, "-plain-reader", "-conninfo", conninfo, "-slot", slot,
		"-endpos", endpos, "-out", dir+"/events.jsonl")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("plain reader: %w\n%s", err, out.String())
	}
	return measured(cmd, time.Since(start)), nil
}
