package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// maintInstance is one service of TestPostgresMaintenance, on its own database.
type maintInstance struct {
	name, listener, addr, out string
	db                        *pgtest.DB
	p                         *proc
	load                      *rowLoad
}

// rowLoad inserts rows in small transactions, each on a fresh connection (a smart
// shutdown waits for open sessions), until stopped; failed inserts are retried.
type rowLoad struct {
	dsn  string
	stop chan struct{}
	done chan struct{}
}

func startLoad(dsn string) *rowLoad {
	l := &rowLoad{dsn: dsn, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		id := 1
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(40 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			conn, err := pgx.Connect(ctx, l.dsn)
			if err == nil {
				_, err = conn.Exec(ctx, `INSERT INTO t SELECT g, 0 FROM generate_series($1::int, $2::int) g ON CONFLICT DO NOTHING`, id, id+4)
				conn.Close(ctx)
			}
			cancel()
			if err == nil {
				id += 5
			}
		}
	}()
	return l
}

func (l *rowLoad) finish() {
	close(l.stop)
	<-l.done
}

// oracleIDs reads the rows inserted into t from a test_decoding slot,
// which records every committed change independently of the service.
func oracleIDs(t *testing.T, db *pgtest.DB, slot string) map[int]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := db.Server.Connect(ctx, db.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL) WHERE data LIKE 'table public.t: INSERT:%'`, slot)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\bid\[integer\]:(\d+)`)
	ids := map[int]bool{}
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected oracle line %q", l)
		}
		n, _ := strconv.Atoi(m[1])
		ids[n] = true
	}
	return ids
}

// insertedIDs returns the ids of the rows whose INSERT events a file sink wrote.
func insertedIDs(t *testing.T, path string) map[int]bool {
	t.Helper()
	ids := map[int]bool{}
	for _, ev := range readEvents(t, path) {
		if ev.Op != "INSERT" {
			continue
		}
		id, err := strconv.Atoi(string(ev.New["id"]))
		if err != nil {
			t.Fatalf("insert event without a numeric id: %s", ev.raw)
		}
		ids[id] = true
	}
	return ids
}

// readyz returns the status code and body of GET /readyz.
func readyz(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPostgresMaintenance runs three services, each on its own database of one
// PostgreSQL server and under write load — plain, with failover, with a replay
// window — through what an operator does to a database: pg_ctl stop -m fast, -m
// smart and -m immediate, each followed by pg_ctl start, and a 20 s LOCK of
// observer_checkpoints. Each time PostgreSQL stops within 10 s (pg_ctl -t 10); no
// service exits; while PostgreSQL is down /readyz, observer_replication_connected and
// observer_listener_health all say so, and during the lock /readyz names the
// checkpoints; each service reconnects and is ready again. After -m fast PostgreSQL
// stays down until the failover service's lease (3 s) has expired, the path that once
// ended it as "fenced" (exit code 5): it says that the lease expired, keeps running
// and renews the lease once PostgreSQL is back. At the end an independent oracle slot
// (test_decoding) shows that every committed row was delivered.
func TestPostgresMaintenance(t *testing.T) {
	srv, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postgres log:\n%s", srv.Log())
		}
		srv.Remove()
	})
	extras := map[string]string{
		"plain":    "",
		"failover": "failover: {enabled: true, lease_duration: 3s, renew_interval: 500ms}",
		"window":   "replay_window: 256MiB",
	}
	var insts []*maintInstance
	var failover *maintInstance
	for _, name := range []string{"plain", "failover", "window"} {
		in := &maintInstance{name: name, listener: "node-" + name, addr: freeAddr(t), out: filepath.Join(t.TempDir(), "events.jsonl")}
		in.db = pgtest.NewDBOn(t, srv)
		in.db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); CREATE PUBLICATION obs_pub FOR TABLE t`)
		in.db.CreateSlotWith("oracle_"+name, "test_decoding") // slot names are per cluster
		cfg := writeConfig(t, fmt.Sprintf(`
listener_id: %s
source: {dsn: %q, slot: obs_slot_%s, publication: obs_pub, manage_slot: true, status_interval: 1s,
         reconnect: {initial_delay: 100ms, max_delay: 1s}}
checkpoints: {interval: 200ms}
admin: {listen: %q}
%s
observers:
  all:
    entity: t
    event_type: INSERT
    actions: [{type: file, name: out, path: %q}]
`, in.listener, in.db.DSN(), name, in.addr, extras[name], in.out))
		in.p = startAndWait(t, cfg, in.addr)
		insts = append(insts, in)
		if name == "failover" {
			failover = in
		}
	}
	for _, in := range insts {
		in.load = startLoad(in.db.DSN())
	}
	alive := func(when string) {
		t.Helper()
		for _, in := range insts {
			if in.p.exited() {
				t.Fatalf("the %s service exited %s (code %d):\n%s", in.name, when, in.p.cmd.ProcessState.ExitCode(), in.p.output())
			}
		}
	}
	ready := func(when string) {
		t.Helper()
		for _, in := range insts {
			waitFor(t, 90*time.Second, "the "+in.name+" service to be ready "+when, func() bool {
				alive(when)
				code, _ := readyz(in.addr)
				return code == http.StatusOK
			})
		}
	}
	delivered := func(in *maintInstance) int { return len(insertedIDs(t, in.out)) }
	const (
		leaseExpired = "the slot's lease expired while it could not be renewed"
		leaseRenewed = "the slot's lease is renewed again"
	)

	for _, mode := range []string{"fast", "smart", "immediate"} {
		before := make([]int, len(insts))
		for i, in := range insts {
			before[i] = delivered(in)
		}
		for i, in := range insts { // some load streamed since the last step
			waitFor(t, 60*time.Second, "new rows in the "+in.name+" service's file", func() bool { return delivered(in) > before[i] })
		}
		expired, renewed := strings.Count(failover.p.output(), leaseExpired), strings.Count(failover.p.output(), leaseRenewed)
		began := time.Now()
		if err := srv.StopMode(mode, 10*time.Second); err != nil {
			srv.Kill()
			t.Fatalf("pg_ctl stop -m %s: PostgreSQL did not stop within 10s while the services streamed: %v", mode, err)
		}
		t.Logf("pg_ctl stop -m %s took %v", mode, time.Since(began).Round(time.Millisecond))
		for _, in := range insts {
			health := fmt.Sprintf(`observer_listener_health{listener_id=%q}`, in.listener)
			waitFor(t, 30*time.Second, "the "+in.name+" service to report PostgreSQL down in /readyz and metrics", func() bool {
				alive("while PostgreSQL was down after -m " + mode)
				code, _ := readyz(in.addr)
				m := scrape(t, in.addr, "")
				return code == http.StatusServiceUnavailable && metric(t, m, "observer_replication_connected") == 0 && metric(t, m, health) == 0
			})
		}
		time.Sleep(time.Second)
		if mode == "fast" { // down for longer than the lease
			waitFor(t, 30*time.Second, "the failover service to log that its lease expired", func() bool {
				alive("while PostgreSQL was down after -m fast")
				return strings.Count(failover.p.output(), leaseExpired) > expired
			})
		}
		alive("while PostgreSQL was down after -m " + mode)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		ready("after pg_ctl stop -m " + mode + " and start")
		if mode == "fast" {
			waitFor(t, 30*time.Second, "the failover service to renew its expired lease", func() bool {
				alive("after its lease expired")
				return strings.Count(failover.p.output(), leaseRenewed) > renewed
			})
		}
	}

	// A lock on the checkpoint table: writes fail and the instances say so, but the
	// lease is renewed and nobody exits.
	ctx := context.Background()
	var locks []pgx.Tx
	for _, in := range insts {
		conn := in.db.Conn()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE observer_checkpoints IN ACCESS EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		locks = append(locks, tx)
	}
	locked := time.Now()
	for _, in := range insts {
		waitFor(t, 15*time.Second, "the "+in.name+" service to report that checkpoints cannot be written", func() bool {
			alive("during the lock")
			code, body := readyz(in.addr)
			return code == http.StatusServiceUnavailable && strings.Contains(body, "checkpoints cannot be written")
		})
	}
	for time.Since(locked) < 20*time.Second {
		alive("during the lock")
		time.Sleep(200 * time.Millisecond)
	}
	for _, tx := range locks {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ready("after the lock")

	var wg sync.WaitGroup
	for _, in := range insts {
		wg.Add(1)
		go func() { defer wg.Done(); in.load.finish() }()
	}
	wg.Wait()
	for _, in := range insts {
		want := oracleIDs(t, in.db, "oracle_"+in.name)
		if len(want) < 500 {
			t.Fatalf("the load committed only %d rows into the %s database", len(want), in.name)
		}
		waitFor(t, 90*time.Second, fmt.Sprintf("the %s service to deliver the %d committed rows", in.name, len(want)), func() bool {
			alive("at the end")
			got := insertedIDs(t, in.out)
			for id := range want {
				if _, ok := got[id]; !ok {
					return false
				}
			}
			return true
		})
		t.Logf("%s: %d committed rows delivered", in.name, len(want))
	}
	for _, in := range insts {
		if code := in.p.stop(); code != 0 {
			t.Fatalf("the %s service exited with %d after SIGTERM; want 0", in.name, code)
		}
	}
}
