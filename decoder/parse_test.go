package decoder

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/lsn"
)

// TestParseEventRoundTripGolden parses every golden event (decoded from real pgoutput
// streams) and checks that AppendJSON gives back the same bytes.
func TestParseEventRoundTripGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "golden", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			ev, err := ParseEvent(line)
			if err != nil {
				t.Fatalf("%s: unexpected error; got %v\n%s", f, err, line)
			}
			if got := ev.AppendJSON(nil); !bytes.Equal(got, line) {
				t.Fatalf("%s: round trip differs;\ngot  %s\nwant %s", f, got, line)
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("unexpected number of golden events; got %d; want at least 10", n)
	}
}

func TestParseEventRoundTripBuilt(t *testing.T) {
	f := func(ev *Event) {
		t.Helper()
		want := ev.AppendJSON(nil)
		got, err := ParseEvent(want)
		if err != nil {
			t.Fatalf("unexpected error; got %v\n%s", err, want)
		}
		if b := got.AppendJSON(nil); !bytes.Equal(b, want) {
			t.Fatalf("round trip differs;\ngot  %s\nwant %s", b, want)
		}
	}
	ct := time.Date(2026, 1, 22, 10, 11, 12, 123456000, time.UTC)
	row := &Row{Names: []string{"id", "doc", "note"}, Values: []json.RawMessage{
		json.RawMessage(`12345678901234567890.000001`), json.RawMessage(`{"b":1,"a":[1,2]}`), json.RawMessage(`"a \"q\" <&>\u2028"`)}}
	f(&Event{ID: lsn.Position{Commit: 0x16B3748, Ord: 3}, LSN: 0x16B3700, Xid: 42, CommitTime: ct,
		Schema: "public", Table: "Orders", Op: OpUpdate, Key: &Row{Names: []string{"id"}, Values: row.Values[:1]},
		New: row, Old: row, OldKind: OldFull, Changed: []string{}, Unavailable: []string{"doc"}, Origin: "o1"})
	f(&Event{ID: lsn.Position{Commit: 0x1000, Ord: 1}, LSN: 0x1000, Op: OpMessage,
		Message: &Message{Prefix: "p", Content: []byte("hello"), LSN: 0x1000}})
	f(&Event{ID: lsn.Position{Commit: 0x1000, Ord: 2}, LSN: 0x1000, Xid: 9, CommitTime: ct, Op: OpMessage,
		Message: &Message{Prefix: "bin", Content: []byte{0xff, 0x00, 0xfe}, Transactional: true, LSN: 0x1000}})
	f(&Event{ID: lsn.Position{Commit: 0x2000, Ord: 1}, LSN: 0x1F00, Xid: 10, CommitTime: ct, Schema: "s", Table: "t", Op: OpTruncate})
	f(&Event{ID: lsn.Position{Commit: 0x2000, Ord: 2}, LSN: 0x1F00, Xid: 10, CommitTime: ct, Schema: "s", Table: "t", Op: OpDelete,
		Key: &Row{Names: []string{}, Values: []json.RawMessage{}}, Old: &Row{Names: []string{"id"}, Values: []json.RawMessage{json.RawMessage(`null`)}}, OldKind: OldKey})
}

func TestParseEventErrors(t *testing.T) {
	f := func(in string) {
		t.Helper()
		if _, err := ParseEvent([]byte(in)); err == nil {
			t.Fatalf("unexpected success for %s", in)
		}
	}
	f(`not json`)
	f(`{"id":"nope","lsn":"0/1","op":"INSERT"}`)
	f(`{"id":"0/10:1","lsn":"0/1","op":"UPSERT"}`)
	f(`{"id":"0/10:1","lsn":"0/1","commit_lsn":"0/11","op":"INSERT"}`)
	f(`{"id":"0/10:1","lsn":"0/1","op":"INSERT","new":[1,2]}`)
	f(`{"id":"0/10:1","lsn":"0/1","op":"INSERT","old_kind":"some"}`)
	f(`{"id":"0/10:1","lsn":"0/1","op":"MESSAGE","message":{"prefix":"p","content_base64":"!!"}}`)
}
