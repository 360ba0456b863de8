package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/service"
	"github.com/fraiseql/fraiseql-observers/snapshot"
)

func seconds(s float64) *float64 { return &s }

func TestProgressBar(t *testing.T) {
	f := func(i snapshot.Info, want string) {
		t.Helper()
		if got := progressBar(i); got != want {
			t.Fatalf("unexpected progress bar of %+v;\ngot  %q\nwant %q", i, got, want)
		}
	}
	f(snapshot.Info{RowsRead: 452301, RowsEstimate: 1000000, RowsPerSecond: 12345.6, ETASeconds: seconds(44.3)},
		"[#############.................]  45.2%  452,301 / ~1,000,000 rows  12,345 rows/s  ETA 44.3s")
	// Just started: no estimate, no rate, no ETA.
	f(snapshot.Info{}, "[..............................]   0.0%  0 / ~0 rows  0 rows/s")
	// More rows than the planner estimated: the bar stops at 100 %.
	f(snapshot.Info{RowsRead: 1200, RowsEstimate: 1000, RowsPerSecond: 0.5, ETASeconds: seconds(0)},
		"[##############################] 100.0%  1,200 / ~1,000 rows  0 rows/s  ETA 0.0s")
	f(snapshot.Info{RowsRead: 1, RowsEstimate: 3, RowsPerSecond: 1, ETASeconds: seconds(125.4)},
		"[##########....................]  33.3%  1 / ~3 rows  1 rows/s  ETA 2m5s")
	f(snapshot.Info{RowsRead: 2, RowsEstimate: 3, RowsPerSecond: 1, ETASeconds: seconds(3725)},
		"[####################..........]  66.7%  2 / ~3 rows  1 rows/s  ETA 1h2m0s")
}

func TestSnapshotLine(t *testing.T) {
	f := func(i snapshot.Info, want string) {
		t.Helper()
		if got := snapshotLine(i); got != want {
			t.Fatalf("unexpected line of %+v;\ngot  %q\nwant %q", i, got, want)
		}
	}
	f(snapshot.Info{ID: 4, Table: "public.orders", State: snapshot.StatePending, RowsEstimate: 1},
		"4 of public.orders: pending, about 1 row to read")
	f(snapshot.Info{ID: 3, Table: "public.payments", Where: "amount > 100", Observer: "audit", State: snapshot.StateRunning,
		Chunks: 12, RowsRead: 12288, RowsEstimate: 1000000, RowsPerSecond: 2048.9, ETASeconds: seconds(482.4)},
		"3 of public.payments where amount > 100 for observer audit: running, 12,288 of about 1,000,000 rows read in 12 chunks, 2,048 rows/s, ETA 8m2s")
	f(snapshot.Info{ID: 5, Table: "public.t", State: snapshot.StateRunning, RowsEstimate: 10},
		"5 of public.t: running, 0 of about 10 rows read in 0 chunks")
	f(snapshot.Info{ID: 1, Table: "public.orders", Observer: "order_events", State: snapshot.StateDone, Chunks: 1, RowsRead: 1000, RowsSent: 990},
		"1 of public.orders for observer order_events: done, 1,000 rows read in 1 chunk, 990 delivered as READ (10 changed while read: delivered by the stream)")
	f(snapshot.Info{ID: 7, Table: "public.t", State: snapshot.StateCancelled, Chunks: 3, RowsRead: 300, RowsSent: 250},
		"7 of public.t: cancelled, 300 rows read in 3 chunks, 250 delivered as READ")
	f(snapshot.Info{ID: 2, Table: "public.t", Where: "1 / v > 0", State: snapshot.StateFailed, Chunks: 1, RowsRead: 1, RowsSent: 1,
		Error: "read chunk 2 of public.t: ERROR: division by zero (SQLSTATE 22012)"},
		"2 of public.t where 1 / v > 0: failed, 1 row read in 1 chunk, 1 delivered as READ: read chunk 2 of public.t: ERROR: division by zero (SQLSTATE 22012)")
}

// TestStatusSnapshotLines: the text status shows one line per pending or running
// snapshot, after the DLQ line, with names escaped for the terminal.
func TestStatusSnapshotLines(t *testing.T) {
	doc := service.StatusDoc{Source: "service", Version: "test", Slot: "obs_slot", Publication: "obs_pub", CheckpointsEnabled: true,
		Leader:     service.LeaderDoc{ListenerID: "listener-1", Healthy: 1, Total: 1},
		SlotHealth: service.SlotDoc{Exists: true, Active: true, ActivePID: 42, WALStatus: "reserved"},
		DLQ:        service.DLQDoc{Enabled: true},
		Snapshots: []snapshot.Info{
			{ID: 3, Table: "public.payments", Observer: "audit", State: snapshot.StateRunning, Chunks: 2, RowsRead: 2048, RowsEstimate: 10000,
				RowsPerSecond: 1024, ETASeconds: seconds(7.8)},
			{ID: 4, Table: "public.esc\x1b]0;PWNED\a", State: snapshot.StatePending, RowsEstimate: 5},
		}}
	var out bytes.Buffer
	if err := printStatus(&globals{stdout: &out, stderr: io.Discard}, doc, false, false, "http://127.0.0.1:9187"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	var got []string
	dlq := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "DLQ: ") {
			dlq = i
		}
		if strings.HasPrefix(l, "Snapshot ") {
			if dlq < 0 || i <= dlq {
				t.Fatalf("snapshot line before the DLQ line:\n%s", out.String())
			}
			got = append(got, l)
		}
	}
	want := []string{
		"Snapshot 3 of public.payments for observer audit: running, 2,048 of about 10,000 rows read in 2 chunks, 1,024 rows/s, ETA 7.8s",
		`Snapshot 4 of public.esc\x1b]0;PWNED\x07: pending, about 5 rows to read`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("unexpected snapshot lines;\ngot\n%s\nwant\n%s\nin\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), out.String())
	}
}

// TestTerminalOf: the progress bar goes to stdout only when it is a terminal, under
// the termWriter or not; the termWriter's pending bytes are written first.
func TestTerminalOf(t *testing.T) {
	file, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for name, w := range map[string]io.Writer{"a buffer": &bytes.Buffer{}, "a file": file, "a pipe": pw,
		"a buffer under the termWriter": newTermWriter(&bytes.Buffer{}), "a file under the termWriter": newTermWriter(file)} {
		if f := terminalOf(w); f != nil {
			t.Fatalf("%s taken for a terminal", name)
		}
	}
	master, slave := openPTY(t)
	out := readAll(master)
	if terminalOf(slave) != slave {
		t.Fatalf("a terminal not found")
	}
	tw := newTermWriter(slave)
	tw.Write([]byte("ok \xc3")) // an incomplete rune waits in the termWriter
	if terminalOf(tw) != slave {
		t.Fatalf("a terminal under the termWriter not found")
	}
	slave.Close()
	if got := out(); got != `ok \xc3` {
		t.Fatalf("unexpected output before the bar; got %q; want %q", got, `ok \xc3`)
	}
}

// followServer answers GET /snapshots/1 with info.
func followServer(t *testing.T, info snapshot.Info) *adminClient {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/snapshots/1" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(info)
	}))
	t.Cleanup(srv.Close)
	return &adminClient{base: srv.URL, http: srv.Client()}
}

var (
	followRunning = snapshot.Info{ID: 1, Table: "public.orders", State: snapshot.StateRunning, Chunks: 5, RowsRead: 500, RowsEstimate: 1000,
		RowsPerSecond: 250, ETASeconds: seconds(2)}
	followDone = snapshot.Info{ID: 1, Table: "public.orders", State: snapshot.StateDone, Chunks: 10, RowsRead: 1000, RowsSent: 1000, RowsEstimate: 1000}
)

// TestFollowSnapshotPlainLines: not on a terminal, following a snapshot prints
// sentences, no bar and no cursor control.
func TestFollowSnapshotPlainLines(t *testing.T) {
	var out bytes.Buffer
	g := &globals{stdout: newTermWriter(&out), stderr: io.Discard}
	if err := followSnapshot(context.Background(), g, followServer(t, followDone), followRunning, false); err != nil {
		t.Fatal(err)
	}
	want := "Snapshot 1 of public.orders: running, 500 of about 1,000 rows read in 5 chunks, 250 rows/s, ETA 2.0s\n" +
		"Snapshot 1 of public.orders: done, 1,000 rows read in 10 chunks, 1,000 delivered as READ\n"
	if out.String() != want {
		t.Fatalf("unexpected output;\ngot  %q\nwant %q", out.String(), want)
	}
}

// TestFollowSnapshotProgressBar: on a terminal, following a snapshot draws the bar
// over itself and replaces it with the final sentence.
func TestFollowSnapshotProgressBar(t *testing.T) {
	master, slave := openPTY(t)
	out := readAll(master)
	g := &globals{stdout: newTermWriter(slave), stderr: io.Discard}
	err := followSnapshot(context.Background(), g, followServer(t, followDone), followRunning, false)
	slave.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The terminal writes a newline as CR LF.
	want := "\r\x1b[K[###############...............]  50.0%  500 / ~1,000 rows  250 rows/s  ETA 2.0s" +
		"\r\x1b[KSnapshot 1 of public.orders: done, 1,000 rows read in 10 chunks, 1,000 delivered as READ\r\n"
	if got := out(); got != want {
		t.Fatalf("unexpected terminal output;\ngot  %q\nwant %q", got, want)
	}
}
