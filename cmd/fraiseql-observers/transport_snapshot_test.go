package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/service"
)

// opDelivery is one webhook request: the observer it was for (the URL path), the
// event's id, op and the row's id and v.
type opDelivery struct {
	observer, eventID, op string
	row, v                int
}

// opReceiver records every webhook request in the order it arrived.
type opReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []opDelivery
}

func newOpReceiver(t *testing.T) *opReceiver {
	r := &opReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		var ev fileEvent
		if err == nil {
			err = json.Unmarshal(body, &ev)
		}
		if err != nil {
			http.Error(w, "not an event", http.StatusBadRequest)
			return
		}
		row, _ := strconv.Atoi(string(ev.New["id"]))
		v, _ := strconv.Atoi(string(ev.New["v"]))
		r.mu.Lock()
		r.got = append(r.got, opDelivery{observer: strings.TrimPrefix(req.URL.Path, "/"), eventID: ev.ID, op: ev.Op, row: row, v: v})
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// distinct returns the first delivery of each event id for observer, in arrival order.
func (r *opReceiver) distinct(observer string) []opDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []opDelivery
	for _, d := range r.got {
		if d.observer == observer && !seen[d.eventID] {
			seen[d.eventID] = true
			out = append(out, d)
		}
	}
	return out
}

func countOp(ds []opDelivery, op string) int {
	n := 0
	for _, d := range ds {
		if d.op == op {
			n++
		}
	}
	return n
}

// snapshotConfig is the rig's configuration of one process with snapshot.mode
// initial, the snapshot options in extra, and two observers of t: rows (INSERT and
// UPDATE, no READ) and reads (READ only), each a webhook to recv.
func (r *transportRig) snapshotConfig(listener, addr string, recv *opReceiver, extra string) string {
	r.t.Helper()
	data, err := os.ReadFile(r.config(listener, addr))
	if err != nil {
		r.t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(data), "observers:\n")
	if !ok {
		r.t.Fatal("the rig's configuration has no observers section")
	}
	observer := func(name, ops string) string {
		return fmt.Sprintf(`  %s:
    entity: public.t
    event_type: [%s]
    retry: {max_attempts: 1000, initial_delay: 20ms, max_delay: 200ms}
    actions:
      - {type: webhook, url: %q, allow_private_networks: true, timeout: 5s}
`, name, ops, recv.srv.URL+"/"+name)
	}
	return writeConfig(r.t, head+"snapshot: {mode: initial, chunk_size: 500, "+extra+"}\nobservers:\n"+
		observer("rows", "INSERT, UPDATE")+observer("reads", "READ"))
}

// startSnapshotting runs one process with role and snapshotConfig and waits until
// its /readyz says ready; it returns the process, its admin address and its
// configuration.
func (r *transportRig) startSnapshotting(role, listener string, recv *opReceiver, extra string) (*proc, string, string) {
	r.t.Helper()
	addr := freeAddr(r.t)
	cfg := r.snapshotConfig(listener, addr, recv, extra)
	return r.startConfigured(role, listener, addr, cfg), addr, cfg
}

// TestTransportSnapshot: with a reader and two executors, snapshot.mode initial
// backfills the table's 3000 rows to the observer that lists READ; then a snapshot
// for the other observer (--observer rows), while writers update random rows and
// insert new ones, reaches that observer alone: every row arrives as READ or a later
// change, per row in order (a READ never after a newer change of its row, the
// changes in commit order), and the last event of each row is the row the table
// holds. An executor answers the snapshot commands with the reader's name.
func TestTransportSnapshot(t *testing.T) {
	r := newTransportRig(t)
	r.db.Exec(`INSERT INTO t SELECT g, 0 FROM generate_series(1, 3000) g`)
	recv := newOpReceiver(t)
	start := func(role, listener string) (*proc, string, string) {
		return r.startSnapshotting(role, listener, recv, "rows_per_second: 3000")
	}
	reader, raddr, rcfg := start(service.RoleReader, "reader-1")
	_, _, ecfg := start(service.RoleExecutor, "exec-1")
	start(service.RoleExecutor, "exec-2")
	waitOwners(t, raddr, 2)

	// The initial snapshot, through the stream, to the observer that lists READ.
	waitFor(t, 2*time.Minute, "the initial snapshot's 3000 rows", func() bool { return len(recv.distinct("reads")) >= 3000 })
	type info struct {
		ID       int64  `json:"id"`
		State    string `json:"state"`
		Origin   string `json:"origin"`
		Observer string `json:"observer"`
		RowsRead int64  `json:"rows_read"`
		RowsSent int64  `json:"rows_sent"`
	}
	var infos []info
	waitFor(t, time.Minute, "the initial snapshot to be done", func() bool {
		cliJSON(t, nil, &infos, "snapshot", "status", "--config", rcfg)
		return len(infos) == 1 && infos[0].State != "pending" && infos[0].State != "running"
	})
	if len(infos) != 1 || infos[0].State != "done" || infos[0].Origin != "initial" || infos[0].RowsRead != 3000 || infos[0].RowsSent != 3000 {
		t.Fatalf("unexpected snapshots after the initial one: %+v", infos)
	}
	res := cli(t, nil, "snapshot", "status", "--config", ecfg)
	if res.code != 1 || !strings.Contains(res.stderr, "is an executor") || !strings.Contains(res.stderr, "reader-1") {
		t.Fatalf("unexpected answer of an executor to snapshot status; got exit code %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}

	// A snapshot for rows alone while writers go on.
	stop := make(chan struct{})
	var writes sync.WaitGroup
	writes.Add(1)
	go func() {
		defer writes.Done()
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, r.db.DSN())
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		for id := 3001; ; id++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := conn.Exec(ctx, `WITH i AS (INSERT INTO t VALUES ($1, 0)) UPDATE t SET v = v + 1 WHERE id IN ($2, $3)`,
				id, 1+rand.IntN(3000), 1+rand.IntN(3000))
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	// Followed on a terminal: a progress bar redrawn in place, then the outcome;
	// meanwhile the reader's /status lists the snapshot.
	var watched sync.WaitGroup
	watching := make(chan struct{})
	var listed []string // the states /status showed snapshot 2 in
	watched.Add(1)
	go func() {
		defer watched.Done()
		for {
			select {
			case <-watching:
				return
			case <-time.After(50 * time.Millisecond):
			}
			resp, err := http.Get("http://" + raddr + "/status")
			if err != nil {
				continue
			}
			var doc service.StatusDoc
			err = json.NewDecoder(resp.Body).Decode(&doc)
			resp.Body.Close()
			if err != nil {
				continue
			}
			for _, sn := range doc.Snapshots {
				if sn.ID == 2 && sn.Table == "public.t" {
					listed = append(listed, sn.State)
				}
			}
		}
	}()
	res = cliOnTerminal(t, nil, "snapshot", "--table", "public.t", "--observer", "rows", "--config", rcfg)
	close(watching)
	watched.Wait()
	close(stop)
	writes.Wait()
	if res.code != 0 || !strings.Contains(res.stdout, "Snapshot 2 of public.t requested") || !strings.Contains(res.stdout, "2 of public.t for observer rows: done") {
		t.Fatalf("unexpected snapshot command on a terminal; got exit code %d\nterminal:\n%q\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "\r\x1b[K[") || !strings.Contains(res.stdout, " rows/s") {
		t.Fatalf("no progress bar on the terminal:\n%q", res.stdout)
	}
	if !slices.ContainsFunc(listed, func(s string) bool { return s == "pending" || s == "running" }) {
		t.Fatalf("the reader's /status never listed snapshot 2 while it ran; states seen: %v", listed)
	}
	t.Logf("/status listed snapshot 2 %d times while it ran", len(listed))

	rows, err := r.db.Conn().Query(context.Background(), `SELECT id, v FROM t`)
	if err != nil {
		t.Fatal(err)
	}
	final := map[int]int{}
	var id, v int
	if _, err := pgx.ForEachRow(rows, []any{&id, &v}, func() error { final[id] = v; return nil }); err != nil {
		t.Fatal(err)
	}
	byRow := func() map[int][]opDelivery {
		out := map[int][]opDelivery{}
		for _, d := range recv.distinct("rows") {
			out[d.row] = append(out[d.row], d)
		}
		return out
	}
	cliJSON(t, nil, &infos, "snapshot", "status", "--config", rcfg)
	if len(infos) != 2 || infos[0].ID != 2 || infos[0].State != "done" || infos[0].Observer != "rows" || infos[0].RowsSent < 2000 {
		t.Fatalf("unexpected snapshots after the one for rows: %+v", infos)
	}
	// Everything arrived: the snapshot's READ rows (rows lists no READ: they came
	// for it alone) and, for every row, an event of the row as the table holds it.
	waitFor(t, 2*time.Minute, "the snapshot's READ rows and the final image of every row delivered to rows", func() bool {
		if countOp(recv.distinct("rows"), "READ") < int(infos[0].RowsSent) {
			return false
		}
		got := byRow()
		for id, v := range final {
			if !slices.ContainsFunc(got[id], func(d opDelivery) bool { return d.v == v }) {
				return false
			}
		}
		return true
	})
	reads := 0
	for id, ds := range byRow() {
		first := 1 // the changes of a row of the snapshot count v from 1, those of a new row from 0 (its INSERT)
		if id > 3000 {
			first = 0
		}
		// Per row, in arrival order: a READ of v comes after the change that made v
		// and before the next one; the changes come in commit order, none missing.
		rank, next := -1, first
		for _, d := range ds {
			rk := 2 * d.v
			if d.op == "READ" {
				rk++
				reads++
			} else if d.v != next {
				t.Fatalf("row %d: change v=%d delivered where v=%d was due; deliveries %+v", id, d.v, next, ds)
			} else {
				next++
			}
			if rk <= rank {
				t.Fatalf("row %d: unexpected order of deliveries (a READ after a newer change, or changes out of commit order): %+v", id, ds)
			}
			rank = rk
		}
		if ds[len(ds)-1].v != final[id] {
			t.Fatalf("row %d: last delivery v=%d; the table holds v=%d", id, ds[len(ds)-1].v, final[id])
		}
	}
	if int64(reads) != infos[0].RowsSent {
		t.Fatalf("unexpected READ deliveries to rows; got %d; want the snapshot's %d", reads, infos[0].RowsSent)
	}
	// reads got the initial snapshot's rows, none of those for rows.
	if got := countOp(recv.distinct("reads"), "READ"); got != 3000 || len(recv.distinct("reads")) != 3000 {
		t.Fatalf("unexpected deliveries to reads; got %d READ of %d; want the initial snapshot's 3000 alone", got, len(recv.distinct("reads")))
	}
	t.Logf("%d rows: %d READ delivered to rows, %d rows written meanwhile", len(final), reads, len(final)-3000)
	if code := reader.stop(); code != 0 {
		t.Fatalf("unexpected exit code of the reader: %d", code)
	}
}

// TestTransportSnapshotReaderKilled: the reader is SIGKILLed in the middle of the
// initial snapshot and started again: the snapshot resumes after its last chunk
// stored in the stream, every row arrives, and a row read again keeps its event id
// (JetStream's duplicate window drops the chunks published again).
func TestTransportSnapshotReaderKilled(t *testing.T) {
	r := newTransportRig(t)
	r.db.Exec(`INSERT INTO t SELECT g, 0 FROM generate_series(1, 8000) g`)
	recv := newOpReceiver(t)
	reader, _, rcfg := r.startSnapshotting(service.RoleReader, "reader-1", recv, "rows_per_second: 2000")
	r.startSnapshotting(service.RoleExecutor, "exec-1", recv, "")
	type info struct {
		State    string `json:"state"`
		Chunks   int64  `json:"chunks"`
		RowsRead int64  `json:"rows_read"`
	}
	var infos []info
	waitFor(t, time.Minute, "the initial snapshot to complete chunks", func() bool {
		cliJSON(t, nil, &infos, "snapshot", "status", "--config", rcfg)
		return len(infos) == 1 && infos[0].Chunks >= 4
	})
	reader.kill()
	if infos[0].State != "running" {
		t.Fatalf("the snapshot was not running when the reader was killed: %+v", infos)
	}
	var reader2 *proc
	reader2, _, rcfg = r.startSnapshotting(service.RoleReader, "reader-1", recv, "rows_per_second: 2000")
	waitFor(t, 2*time.Minute, "the snapshot to be done after the restart", func() bool {
		cliJSON(t, nil, &infos, "snapshot", "status", "--config", rcfg)
		return len(infos) == 1 && infos[0].State == "done"
	})
	if out := reader2.output(); !strings.Contains(out, `"message":"snapshot resumed"`) || strings.Contains(out, `"message":"snapshot started"`) {
		t.Fatalf("the restarted reader did not resume the snapshot after its completed chunks:\n%s", out)
	}
	waitFor(t, time.Minute, "every row delivered as READ", func() bool { return len(recv.distinct("reads")) >= 8000 })
	ids := map[int]string{}
	for _, d := range recv.distinct("reads") {
		if prev, ok := ids[d.row]; ok {
			t.Fatalf("row %d delivered under two event ids: %s and %s", d.row, prev, d.eventID)
		}
		ids[d.row] = d.eventID
	}
	if len(ids) != 8000 {
		t.Fatalf("unexpected rows delivered; got %d; want 8000", len(ids))
	}
	recv.mu.Lock()
	deliveries := len(recv.got)
	recv.mu.Unlock()
	t.Logf("8000 rows, %d deliveries; the snapshot read %d rows in %d chunks", deliveries, infos[0].RowsRead, infos[0].Chunks)
}
