package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/internal/promtext"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/lsn"
	"github.com/fraiseql/fraiseql-observers/service"
	"github.com/fraiseql/fraiseql-observers/transport"
)

// The tests of this file run the binary with transport.type nats: one reader
// (start --role reader) and executor processes (start --role executor) between a
// throwaway PostgreSQL, a real nats-server -js and a webhook receiver. A
// test_decoding slot is the independent oracle of what was committed.

// startJetStream starts nats-server with JetStream on a free loopback port; its
// store survives a Restart.
func startJetStream(t *testing.T) (*sinktest.Process, string) {
	t.Helper()
	return sinktest.StartJetStream(t, "")
}

// hookDelivery is one request the receiver got: the event id (Idempotency-Key) and
// the row's id and v.
type hookDelivery struct {
	eventID  string
	row, v   int
	listener string // the X-Listener header: which process delivered it
}

// hookReceiver is a webhook receiver on loopback that records every delivery in
// the order it arrived.
type hookReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []hookDelivery
	// holdFor names a process whose requests are recorded and then held, unanswered,
	// until release is closed.
	holdFor string
	held    []hookDelivery
	release chan struct{}
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{release: make(chan struct{})}
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
		d := hookDelivery{eventID: req.Header.Get("Idempotency-Key"), row: row, v: v, listener: req.Header.Get("X-Listener")}
		r.mu.Lock()
		r.got = append(r.got, d)
		hold := r.holdFor != "" && d.listener == r.holdFor
		if hold {
			r.held = append(r.held, d)
		}
		r.mu.Unlock()
		if hold {
			select {
			case <-r.release:
			case <-req.Context().Done():
			}
		}
	}))
	t.Cleanup(func() {
		r.unhold()
		r.srv.Close()
	})
	return r
}

// hold starts holding the requests of the process named listener.
func (r *hookReceiver) hold(listener string) {
	r.mu.Lock()
	r.holdFor = listener
	r.mu.Unlock()
}

// heldDeliveries returns the requests held so far.
func (r *hookReceiver) heldDeliveries() []hookDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookDelivery(nil), r.held...)
}

// unhold answers the held requests and holds no more.
func (r *hookReceiver) unhold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holdFor != "" || r.release != nil {
		select {
		case <-r.release:
		default:
			close(r.release)
		}
		r.holdFor = ""
	}
}

func (r *hookReceiver) deliveries() []hookDelivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookDelivery(nil), r.got...)
}

func (r *hookReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// transportRig is one PostgreSQL database, one nats-server and one receiver, and
// the configurations of the processes under test.
type transportRig struct {
	t        *testing.T
	db       *pgtest.DB
	nats     *sinktest.Process
	natsURL  string
	hook     *hookReceiver
	oracle   string
	stream   string
	writerID int // next row id of the workload
	// The configuration of the processes started after these are set:
	replicas    int    // transport.replicas (1 when 0)
	failover    bool   // failover.enabled, with a 3s lease
	hookTimeout string // the webhook's timeout (5s when "")
}

func newTransportRig(t *testing.T) *transportRig {
	t.Helper()
	srv, url := startJetStream(t)
	r := newTransportRigAt(t, url)
	r.nats = srv
	return r
}

// newTransportRigAt is newTransportRig with the NATS server(s) at url, started by
// the caller.
func newTransportRigAt(t *testing.T, url string) *transportRig {
	t.Helper()
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL)`)
	r := &transportRig{t: t, db: db, hook: newHookReceiver(t), writerID: 1, natsURL: url}
	// Slot and stream names are per cluster and per server; the database name is unique.
	r.oracle = "oracle_" + db.Name
	r.stream = "ev_" + db.Name
	db.CreateSlotWith(r.oracle, "test_decoding")
	return r
}

// config returns the configuration of one process: its listener id and admin
// address, the nats transport and one webhook observer of t.
func (r *transportRig) config(listener, addr string) string {
	failover := ""
	if r.failover {
		failover = "failover: {enabled: true, lease_duration: 3s, renew_interval: 500ms}\n"
	}
	return writeConfig(r.t, fmt.Sprintf(`listener_id: %s
source:
  dsn: %q
  slot: obs_slot
  publication: obs_pub
  manage_slot: true
  manage_publication: true
  publication_tables: [public.t]
  status_interval: 1s
  reconnect: {initial_delay: 100ms, max_delay: 1s}
checkpoints: {enabled: true, interval: 200ms}
dlq: {enabled: true}
concurrent_execution: {enabled: true, max_concurrency: 8}
admin: {listen: %q}
logging: {level: info}
%stransport:
  type: nats
  url: %q
  stream: %s
  subject_prefix: ev.%s
  partitions: 8
  replicas: %d
  lease_ttl: 2s
  ack_wait: 5s
  timeout: 2s
observers:
  rows:
    entity: public.t
    event_type: [INSERT, UPDATE]
    retry: {max_attempts: 1000, initial_delay: 20ms, max_delay: 200ms}
    actions:
      - type: webhook
        url: %q
        allow_private_networks: true
        timeout: %s
        headers: {X-Listener: %s}
`, listener, r.db.DSN(), addr, failover, r.natsURL, r.stream, r.stream, max(r.replicas, 1), r.hook.srv.URL+"/hook", cmp.Or(r.hookTimeout, "5s"), listener))
}

// start runs one process with role and waits until its /readyz says ready.
func (r *transportRig) start(role, listener string) (*proc, string) {
	r.t.Helper()
	addr := freeAddr(r.t)
	return r.startConfigured(role, listener, addr, r.config(listener, addr)), addr
}

// startConfigured runs one process with role, its admin endpoint at addr, and the
// configuration file cfg, and waits until its /readyz says ready.
func (r *transportRig) startConfigured(role, listener, addr, cfg string) *proc {
	r.t.Helper()
	p := startService(r.t, nil, "start", "--role", role, "--config", cfg)
	waitFor(r.t, 60*time.Second, role+" "+listener+" to be ready", func() bool {
		if p.exited() {
			r.t.Fatalf("%s %s exited:\n%s", role, listener, p.output())
		}
		return httpStatus(addr, "/readyz") == http.StatusOK
	})
	return p
}

// write commits n transactions, each inserting two new rows and incrementing v of
// the two rows inserted by the transaction before; per row, v counts its changes
// from 0 in commit order.
func (r *transportRig) write(n int) {
	r.t.Helper()
	ctx := context.Background()
	conn := r.db.Conn()
	for range n {
		id := r.writerID
		tx, err := conn.Begin(ctx)
		if err != nil {
			r.t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO t VALUES ($1, 0), ($2, 0)`, id, id+1); err != nil {
			r.t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `UPDATE t SET v = v + 1 WHERE id IN ($1, $2)`, id-2, id-1); err != nil {
			r.t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			r.t.Fatal(err)
		}
		r.writerID += 2
	}
}

// writeInBackground writes n transactions, pausing between them, on its own
// goroutine; the returned function waits for it.
func (r *transportRig) writeInBackground(n int) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, r.db.DSN())
		if err != nil {
			r.t.Error(err)
			return
		}
		defer conn.Close(ctx)
		for range n {
			id := r.writerID
			_, err := conn.Exec(ctx, `WITH i AS (INSERT INTO t VALUES ($1, 0), ($2, 0)) UPDATE t SET v = v + 1 WHERE id IN ($3, $4)`, id, id+1, id-2, id-1)
			if err != nil {
				r.t.Error(err)
				return
			}
			r.writerID += 2
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() { <-done }
}

// committed reads, from the oracle slot, each row's committed values of v in
// commit order.
func (r *transportRig) committed() map[int][]int {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := r.db.Server.Connect(ctx, r.db.Name)
	if err != nil {
		r.t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_peek_changes($1, NULL, NULL) WHERE data LIKE 'table public.t: %'`, r.oracle)
	if err != nil {
		r.t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		r.t.Fatal(err)
	}
	re := regexp.MustCompile(`^table public\.t: (INSERT|UPDATE): id\[integer\]:(\d+) v\[integer\]:(\d+)$`)
	out := map[int][]int{}
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			r.t.Fatalf("unexpected oracle line %q", l)
		}
		id, _ := strconv.Atoi(m[2])
		v, _ := strconv.Atoi(m[3])
		out[id] = append(out[id], v)
	}
	return out
}

// changes counts the values of committed.
func changes(c map[int][]int) int {
	n := 0
	for _, vs := range c {
		n += len(vs)
	}
	return n
}

// check waits until the receiver got every committed change, then checks the
// deliveries against the oracle: every committed change was delivered; per row,
// the first deliveries of its events follow commit order; a repeat carries the
// event id of the first delivery of the same change, and one event id is never
// two changes. It returns the number of repeated deliveries.
func (r *transportRig) check() int {
	r.t.Helper()
	want := r.committed()
	total := changes(want)
	deadline := time.Now().Add(60 * time.Second)
	for len(distinctChanges(r.hook.deliveries())) < total {
		if time.Now().After(deadline) {
			got := distinctChanges(r.hook.deliveries())
			var missing [][2]int
			for row, vs := range want {
				for _, v := range vs {
					if !got[[2]int{row, v}] && len(missing) < 10 {
						missing = append(missing, [2]int{row, v})
					}
				}
			}
			r.t.Fatalf("timed out after 60s waiting for %d committed changes delivered: %d delivered (%d deliveries); missing (row, v) for example %v",
				total, len(got), r.hook.count(), missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := r.hook.deliveries()
	firsts := map[int][]int{}       // row → v in order of first delivery
	idOf := map[[2]int]string{}     // (row, v) → event id
	changeOf := map[string][2]int{} // event id → (row, v)
	repeats := 0
	for _, d := range got {
		k := [2]int{d.row, d.v}
		if d.eventID == "" {
			r.t.Fatalf("delivery of row %d v %d without an Idempotency-Key", d.row, d.v)
		}
		if prev, ok := changeOf[d.eventID]; ok && prev != k {
			r.t.Fatalf("event id %s delivered for row %d v %d and for row %d v %d", d.eventID, prev[0], prev[1], d.row, d.v)
		}
		changeOf[d.eventID] = k
		if id, ok := idOf[k]; ok {
			if id != d.eventID {
				r.t.Fatalf("row %d v %d delivered again under another event id: %s, then %s", d.row, d.v, id, d.eventID)
			}
			repeats++
			continue
		}
		idOf[k] = d.eventID
		firsts[d.row] = append(firsts[d.row], d.v)
	}
	for row, vs := range want {
		if fmt.Sprint(firsts[row]) != fmt.Sprint(vs) {
			r.t.Fatalf("row %d: unexpected deliveries in first-arrival order; got %v; want %v (commit order)", row, firsts[row], vs)
		}
	}
	if len(firsts) != len(want) {
		r.t.Fatalf("unexpected rows delivered; got %d; want %d", len(firsts), len(want))
	}
	r.t.Logf("%d committed changes, %d deliveries (%d repeats)", total, len(got), repeats)
	return repeats
}

func distinctChanges(ds []hookDelivery) map[[2]int]bool {
	out := map[[2]int]bool{}
	for _, d := range ds {
		out[[2]int{d.row, d.v}] = true
	}
	return out
}

// transportStatus reads the status document of the instance at addr.
func transportStatus(t *testing.T, addr string) *service.TransportDoc {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc service.StatusDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Transport == nil {
		t.Fatalf("the status of %s has no transport part", addr)
	}
	return doc.Transport
}

// waitOwners waits until n executors are live and the 8 partitions are owned as
// transport.Assignment assigns them among those n: a rebalance that has settled.
func waitOwners(t *testing.T, addr string, n int) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d live executors owning the 8 partitions as assigned", n), func() bool {
		ts := transportStatus(t, addr)
		if len(ts.Executors) != n || len(ts.Partitions) != 8 {
			return false
		}
		want := transport.Assignment(ts.Executors, 8)
		for _, p := range ts.Partitions {
			if p.Partition < 0 || p.Partition >= 8 || p.Owner == "" || p.Owner != want[p.Partition] {
				return false
			}
		}
		return true
	})
}

// TestTransportExecutorKilled: a reader and two executors deliver every committed
// change; one executor is SIGKILLed under write load: its partitions move to the
// other, nothing is lost, each row's changes arrive in commit order and repeats
// carry the same event id. /readyz, status and /metrics show the transport.
func TestTransportExecutorKilled(t *testing.T) {
	r := newTransportRig(t)
	reader, raddr := r.start(service.RoleReader, "reader-1")
	_, e1addr := r.start(service.RoleExecutor, "exec-1")
	e2, _ := r.start(service.RoleExecutor, "exec-2")
	waitOwners(t, raddr, 2)

	r.write(50)
	waitFor(t, 60*time.Second, "the first deliveries", func() bool { return r.hook.count() >= 100 })
	// exec-2's deliveries from now on get no answer: it dies with them in flight.
	r.hook.hold("exec-2")
	wait := r.writeInBackground(300)
	waitFor(t, 60*time.Second, "deliveries of exec-2 in flight", func() bool { return len(r.hook.heldDeliveries()) >= 5 })
	e2.kill()
	held := r.hook.heldDeliveries()
	r.hook.unhold()
	wait()
	r.write(100) // after the kill, whatever the background writer had left
	r.check()
	waitOwners(t, raddr, 1)
	// Every delivery exec-2 had in flight when it died is delivered again by exec-1,
	// with the same event id.
	again := map[string]bool{}
	for _, d := range r.hook.deliveries() {
		if d.listener == "exec-1" {
			again[d.eventID] = true
		}
	}
	for _, d := range held {
		if !again[d.eventID] {
			t.Fatalf("event %s (row %d v %d), in flight at exec-2 when it was killed, was not delivered again by exec-1", d.eventID, d.row, d.v)
		}
	}

	st := transportStatus(t, e1addr)
	if st.Role != service.RoleExecutor || st.Executor == nil || len(st.Executor.Owned) != 8 || !st.Connected {
		t.Fatalf("unexpected transport status of the surviving executor: %+v", st)
	}
	rst := transportStatus(t, raddr)
	if rst.Reader == nil || !rst.Reader.Available || rst.Reader.Outstanding != 0 {
		t.Fatalf("unexpected reader status: %+v", rst.Reader)
	}
	m := scrape(t, raddr, "")
	if m["observer_transport_available"] != 1 || m["observer_transport_published_total"] < float64(changes(r.committed())) {
		t.Fatalf("unexpected reader metrics: available %v, published %v", m["observer_transport_available"], m["observer_transport_published_total"])
	}
	em := scrape(t, e1addr, "")
	if got := em["observer_transport_owned_partitions"]; got != 8 {
		t.Fatalf("unexpected observer_transport_owned_partitions of the survivor; got %v; want 8", got)
	}
	// The shipped alert rules and dashboard use only transport series that a reader
	// or an executor exports.
	names := map[string]bool{}
	for _, set := range []map[string]float64{m, em} {
		for series := range set {
			name, _ := promtext.SplitSeries(series)
			names[name] = true
		}
	}
	for _, file := range []string{"../../configs/prometheus/alerts.yaml", "../../configs/grafana/dashboard.json"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range regexp.MustCompile(`observer_transport_[a-z_]+`).FindAllString(string(data), -1) {
			if !names[ref] && !names[ref+"_bucket"] { // a histogram by its name
				t.Errorf("%s refers to %s, which neither the reader's nor the executor's /metrics exports", file, ref)
			}
		}
	}
	if code := reader.stop(); code != 0 {
		t.Fatalf("unexpected exit code of the reader: %d", code)
	}
}

// TestTransportScaleOneThreeOne: executors scaled 1 → 3 → 1 (the two extra ones
// stopped with SIGTERM) while changes stream: partitions move, nothing is lost and
// each row's changes arrive in commit order.
func TestTransportScaleOneThreeOne(t *testing.T) {
	r := newTransportRig(t)
	_, raddr := r.start(service.RoleReader, "reader-1")
	r.start(service.RoleExecutor, "exec-1")
	waitOwners(t, raddr, 1)
	wait := r.writeInBackground(400)
	waitFor(t, 60*time.Second, "deliveries with one executor", func() bool { return r.hook.count() >= 150 })
	e2, _ := r.start(service.RoleExecutor, "exec-2")
	e3, e3addr := r.start(service.RoleExecutor, "exec-3")
	waitOwners(t, raddr, 3)
	// status of the reader and of an executor, each from its own configuration.
	expectCLI(t, nil, 0, []string{"Transport: nats, stream " + r.stream + ", role reader, connected", "Reader: publishing",
		"Executors: 3 live", "8/8 partitions owned", "partition 0: owner ", "partition 7: owner "},
		"status", "--detailed", "--config", r.config("reader-1", raddr))
	expectCLI(t, nil, 0, []string{"role executor, connected", "  Executor ", ": owns partitions [", "Executors: 3 live"},
		"status", "--config", r.config("exec-3", e3addr))
	n := r.hook.count()
	waitFor(t, 60*time.Second, "deliveries with three executors", func() bool { return r.hook.count() >= n+150 })
	if code := e2.stop(); code != 0 {
		t.Fatalf("unexpected exit code of exec-2: %d", code)
	}
	if code := e3.stop(); code != 0 {
		t.Fatalf("unexpected exit code of exec-3: %d", code)
	}
	waitOwners(t, raddr, 1)
	wait()
	r.check()

	// validate-config --detailed checks the stream and the partitions' owners,
	// and refuses a partition count other than the stream's.
	cfg := r.config("check", freeAddr(t))
	expectCLI(t, nil, 0, []string{"connected to NATS for the transport", "stream " + r.stream + " fits the transport", "1 live executor; 8/8 partitions owned"},
		"validate-config", "--detailed", cfg)
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), "partitions: 8", "partitions: 4", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	expectCLI(t, nil, exitPrefight, []string{"was created with 8 partitions, not 4"}, "validate-config", "--detailed", cfg)
}

// TestTransportReaderKilled: the reader is SIGKILLed while changes stream and
// started again: it streams the slot again from its confirmed position, JetStream's
// duplicate window drops what it publishes again, and the executor delivers every
// committed change exactly once (nothing else fails, so nothing repeats).
func TestTransportReaderKilled(t *testing.T) {
	r := newTransportRig(t)
	reader, _ := r.start(service.RoleReader, "reader-1")
	r.start(service.RoleExecutor, "exec-1")
	wait := r.writeInBackground(400)
	waitFor(t, 60*time.Second, "deliveries before the kill", func() bool { return r.hook.count() >= 200 })
	reader.kill()
	_, raddr := r.start(service.RoleReader, "reader-1")
	wait()
	if repeats := r.check(); repeats != 0 {
		t.Fatalf("unexpected repeated deliveries after the reader's restart; got %d; want 0 (JetStream's duplicate window drops re-published events)", repeats)
	}
	m := scrape(t, raddr, "")
	t.Logf("the restarted reader published %v events, %v of them dropped as duplicates", m["observer_transport_published_total"], m["observer_transport_publish_duplicates_total"])
}

// TestTransportNATSAway: a start while NATS is down waits for it; while NATS is
// down later the reader holds the slot and says so in /readyz and status; once NATS
// is back everything committed meanwhile is delivered.
func TestTransportNATSAway(t *testing.T) {
	r := newTransportRig(t)
	addr := freeAddr(t)
	cfg := r.config("reader-1", addr)
	// A start while NATS cannot be reached waits for it, not ready meanwhile.
	r.nats.Kill()
	p := startService(t, nil, "start", "--role", service.RoleAll, "--config", cfg)
	waitFor(t, 60*time.Second, "/readyz to say the start waits for NATS", func() bool {
		if p.exited() {
			t.Fatalf("the service exited:\n%s", p.output())
		}
		code, body := readyz(addr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "waiting for NATS")
	})
	r.nats.Start()
	waitFor(t, 60*time.Second, "the service to be ready", func() bool {
		if p.exited() {
			t.Fatalf("the service exited:\n%s", p.output())
		}
		return httpStatus(addr, "/readyz") == http.StatusOK
	})
	r.write(20)
	waitFor(t, 60*time.Second, "the first deliveries", func() bool { return r.hook.count() >= 40 })
	r.nats.Kill()
	r.write(1)
	// The end of the first transaction written while NATS is away (the service's own
	// checkpoint writes before it may be confirmed: they hold nothing to publish).
	firstEnd, _ := lsn.Parse(pgtest.QueryValue[string](r.db, `SELECT pg_current_wal_lsn()::text`))
	r.write(19)
	waitFor(t, 60*time.Second, "/readyz to report NATS unavailable", func() bool {
		code, body := readyz(addr)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "NATS")
	})
	res := expectCLI(t, nil, 0, []string{"Transport: nats", "NATS unavailable"}, "status", "--config", cfg)
	if p.exited() {
		t.Fatalf("the service exited while NATS was away:\n%s\nstatus:\n%s", p.output(), res.stdout)
	}
	// The slot is held: status updates go on (the slot stays active), but nothing
	// written after NATS went away is confirmed; the metrics say NATS is away.
	time.Sleep(3 * time.Second) // several status updates and checkpoint writes
	if c := confirmedFlush(t, r.db, "obs_slot"); c >= firstEnd {
		t.Fatalf("confirmed_flush_lsn %s passed the first transaction written while NATS was away (it ends at or before %s)", c, firstEnd)
	}
	if !slotActive(r.db, "obs_slot") {
		t.Fatal("the slot is not active while NATS is away: the reader should keep its replication connection")
	}
	if m := scrape(t, addr, ""); m["observer_transport_available"] != 0 || m["observer_transport_publish_pending"] == 0 {
		t.Fatalf("unexpected transport metrics while NATS is away: available %v, publish pending %v",
			m["observer_transport_available"], m["observer_transport_publish_pending"])
	}
	r.nats.Start()
	waitFor(t, 60*time.Second, "the service to be ready again", func() bool { return httpStatus(addr, "/readyz") == http.StatusOK })
	r.write(10)
	r.check()
	expectCLI(t, nil, 0, []string{"Transport: nats", "role all, connected", "Reader: publishing", "1 live", "8/8 partitions owned"}, "status", "--config", cfg)
	// replay (TestTransportReplay) and snapshots (TestTransportSnapshot) work in this mode.
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code: %d", code)
	}
}

// TestTransportRoleNeedsNATS: --role reader or executor with the in_process
// transport is refused with exit code 2 and a message saying why.
func TestTransportRoleNeedsNATS(t *testing.T) {
	cfg := writeConfig(t, "source:\n  dsn: postgres://u@127.0.0.1:1/x\nobservers:\n  o:\n    entity: public.t\n    actions:\n      - type: log\n")
	for _, role := range []string{service.RoleReader, service.RoleExecutor} {
		r := cli(t, nil, "start", "--role", role, "--config", cfg)
		if r.code != exitConfig || !strings.Contains(r.stderr, "--role "+role+" needs transport.type: nats") {
			t.Fatalf("unexpected outcome of --role %s with the in_process transport; got exit code %d, stderr:\n%s", role, r.code, r.stderr)
		}
	}
	r := cli(t, nil, "start", "--role", "bridge", "--config", cfg)
	if r.code != exitConfig || !strings.Contains(r.stderr, "--role must be reader, executor or all") {
		t.Fatalf("unexpected outcome of --role bridge; got exit code %d, stderr:\n%s", r.code, r.stderr)
	}
}

// TestTransportEventTooLarge: a change larger than NATS's max_payload stops the
// reader with an error that says what to do, and nothing is confirmed past it.
func TestTransportEventTooLarge(t *testing.T) {
	r := newTransportRig(t)
	r.db.Exec(`ALTER TABLE t ADD COLUMN pad text`)
	reader, _ := r.start(service.RoleReader, "reader-1")
	r.db.Exec(`INSERT INTO t VALUES (1, 0, repeat('x', 2000000))`)
	if code := reader.wait(60 * time.Second); code == 0 {
		t.Fatalf("unexpected exit code 0 of the reader after a change larger than max_payload")
	}
	if out := reader.output(); !strings.Contains(out, "maximum payload exceeded") || !strings.Contains(out, "source.max_event_bytes") {
		t.Fatalf("the reader's error does not say what happened and what to do:\n%s", out)
	}
	commit := pgtest.QueryValue[string](r.db, `SELECT max(lsn)::text FROM pg_logical_slot_peek_changes($1, NULL, NULL) WHERE data LIKE 'COMMIT%'`, r.oracle)
	c, err := lsn.Parse(commit)
	if err != nil {
		t.Fatal(err)
	}
	if confirmed := confirmedFlush(t, r.db, "obs_slot"); confirmed > c {
		t.Fatalf("the slot was confirmed to %s, past the commit %s of the change JetStream could not take", confirmed, c)
	}
}
