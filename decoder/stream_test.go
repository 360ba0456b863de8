package decoder

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/lsn"
)

// frame is one captured pgoutput message: the WALStart it was sent at and its bytes.
//
// A capture file (testdata/pgoutput/*.bin) is a sequence of frames, each an 8-byte
// big-endian WALStart, a 4-byte big-endian length and that many message bytes.
type frame struct {
	walStart lsn.LSN
	data     []byte
}

func encodeFrames(frames []frame) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint64(b, uint64(f.walStart))
		b = binary.BigEndian.AppendUint32(b, uint32(len(f.data)))
		b = append(b, f.data...)
	}
	return b
}

func decodeFrames(b []byte) ([]frame, error) {
	var frames []frame
	for len(b) > 0 {
		if len(b) < 12 {
			return nil, fmt.Errorf("truncated frame header")
		}
		at := binary.BigEndian.Uint64(b)
		n := int(binary.BigEndian.Uint32(b[8:]))
		if n > len(b)-12 {
			return nil, fmt.Errorf("truncated frame")
		}
		frames = append(frames, frame{lsn.LSN(at), b[12 : 12+n]})
		b = b[12+n:]
	}
	return frames, nil
}

// testdataDir is the repository's shared fixture directory.
var testdataDir = filepath.Join("..", "testdata")

func streamPath(name string) string { return filepath.Join(testdataDir, "pgoutput", name+".bin") }

func goldenPath(name string) string { return filepath.Join(testdataDir, "golden", name+".json") }

func readStream(t testing.TB, name string) []frame {
	t.Helper()
	b, err := os.ReadFile(streamPath(name))
	if err != nil {
		t.Fatalf("read capture (run the test with -update against a live PostgreSQL to create it): %v", err)
	}
	frames, err := decodeFrames(b)
	if err != nil {
		t.Fatalf("%s: %v", streamPath(name), err)
	}
	return frames
}

// scenario is a workload whose pgoutput stream is captured from a live server.
type scenario struct {
	name  string
	setup string   // DDL run before the slot exists
	pubs  string   // publication_names (created by setup; "pub" FOR ALL TABLES when empty)
	steps []string // each run on its own connection (a transaction unless it says BEGIN)
	// session runs before reading the slot, on the reading connection (SET TimeZone ...).
	session string
	opts    []string // extra pgoutput options (name, value, ...)
	golden  bool     // compare with testdata/golden/<name>.json
}

// capture runs sc on a fresh database and returns the stream pgoutput produced for it,
// read through pg_logical_slot_get_binary_changes (the same bytes a walsender sends).
func capture(t testing.TB, sc scenario) []frame {
	t.Helper()
	db := pgtest.NewDB(t)
	db.Exec(sc.setup)
	pubs := sc.pubs
	if pubs == "" {
		db.CreatePublication("pub")
		pubs = "pub"
	}
	db.CreateSlot("slot")
	for _, s := range sc.steps {
		db.Exec(s)
	}
	return readSlot(t, db, "slot", pubs, sc.session, sc.opts...)
}

func readSlot(t testing.TB, db *pgtest.DB, slot, pubs, session string, opts ...string) []frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn := db.Conn()
	if session != "" {
		if _, err := conn.Exec(ctx, session); err != nil {
			t.Fatalf("session setup: %v", err)
		}
	}
	args := []any{slot, pubs}
	q := `SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
		'proto_version', '1', 'publication_names', $2, 'messages', 'true'`
	for i := 0; i < len(opts); i += 2 {
		q += fmt.Sprintf(", $%d, $%d", len(args)+1, len(args)+2)
		args = append(args, opts[i], opts[i+1])
	}
	rows, err := conn.Query(ctx, q+")", args...)
	if err != nil {
		t.Fatalf("read slot: %v", err)
	}
	defer rows.Close()
	var frames []frame
	for rows.Next() {
		var at string
		var data []byte
		if err := rows.Scan(&at, &data); err != nil {
			t.Fatalf("scan change: %v", err)
		}
		l, err := lsn.Parse(at)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, frame{l, bytes.Clone(data)})
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read slot: %v", err)
	}
	return frames
}

// decodeAll decodes a stream with a new Decoder and returns its events as JSON lines.
func decodeAll(t testing.TB, frames []frame, opts Options) ([]*Event, []byte) {
	t.Helper()
	d := New(opts)
	var events []*Event
	var out []byte
	for i, f := range frames {
		n := len(events)
		var err error
		events, _, err = d.Decode(f.walStart, f.data, events)
		if err != nil {
			t.Fatalf("frame %d at %s: %v", i, f.walStart, err)
		}
		for _, e := range events[n:] {
			out = append(e.AppendJSON(out), '\n')
		}
	}
	if d.InTransaction() {
		t.Fatalf("stream ends inside a transaction")
	}
	return events, out
}

// goldenKeyColumns is the KeyColumns hook the golden files are decoded with: it names
// the primary key "id" of the REPLICA IDENTITY FULL tables of the scenarios.
func goldenKeyColumns(rel *Relation) []string {
	switch rel.Name {
	case "ri_full", "toast_full":
		return []string{"id"}
	}
	return nil
}
