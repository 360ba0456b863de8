package decoder

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "re-capture the pgoutput streams from a live PostgreSQL and rewrite testdata/pgoutput and testdata/golden")

// TestGolden decodes the committed captures and compares the events with the golden
// files. With -update it first re-captures every stream from the test server.
func TestGolden(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if *update {
				frames := capture(t, sc)
				writeFile(t, streamPath(sc.name), encodeFrames(frames))
			}
			frames := readStream(t, sc.name)
			_, got := decodeAll(t, frames, Options{KeyColumns: goldenKeyColumns})
			if !sc.golden {
				return
			}
			if *update {
				writeFile(t, goldenPath(sc.name), got)
			}
			want, err := os.ReadFile(goldenPath(sc.name))
			if err != nil {
				t.Fatal(err)
			}
			compareLines(t, got, want)
		})
	}
}

// TestGoldenLive captures every golden scenario afresh and compares the decoded events
// with the golden files after normalising what differs from run to run (LSNs, xids,
// commit times), so that a change in what PostgreSQL sends is detected.
func TestGoldenLive(t *testing.T) {
	if *update {
		t.Skip("the captures were just rewritten")
	}
	for _, sc := range scenarios {
		if !sc.golden {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			_, got := decodeAll(t, capture(t, sc), Options{KeyColumns: goldenKeyColumns})
			want, err := os.ReadFile(goldenPath(sc.name))
			if err != nil {
				t.Fatal(err)
			}
			compareLines(t, normalise(t, got), normalise(t, want))
		})
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func compareLines(t *testing.T, got, want []byte) {
	t.Helper()
	g := strings.Split(string(got), "\n")
	w := strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("unexpected event on line %d;\ngot  %s\nwant %s", i+1, abbrev(gl), abbrev(wl))
		}
	}
}

func abbrev(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "..."
	}
	return s
}

// normalise replaces the fields that differ between captures (LSNs, xid, commit time)
// by placeholders, keeping the ordinal of the id.
func normalise(t *testing.T, lines []byte) []byte {
	t.Helper()
	var out []byte
	for _, line := range bytes.Split(bytes.TrimSpace(lines), []byte("\n")) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("invalid event JSON %s: %v", abbrev(string(line)), err)
		}
		var id string
		if err := json.Unmarshal(m["id"], &id); err != nil {
			t.Fatal(err)
		}
		m["id"] = json.RawMessage(`"*:` + id[strings.LastIndexByte(id, ':')+1:] + `"`)
		m["lsn"], m["commit_lsn"], m["xid"] = json.RawMessage(`"*"`), json.RawMessage(`"*"`), json.RawMessage(`0`)
		if string(m["commit_time"]) != "null" {
			m["commit_time"] = json.RawMessage(`"*"`)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(append(out, b...), '\n')
	}
	return out
}
