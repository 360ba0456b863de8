package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// The live scenario: pgbench commits single-row INSERTs at a fixed rate (Poisson
// arrivals, pgbench -R) while one consumer streams them to a webhook receiver on
// loopback, which measures commit → arrival for every event. The commit time is the
// event's own: the commit timestamp PostgreSQL records in the transaction's commit
// record (pgoutput's Begin message carries it; the service puts it in the event's
// `commit_time`, the plain reader in the body it POSTs). PostgreSQL, the consumers and
// the receiver run on the same host, so both ends read the same clock. The writers use
// synchronous_commit=on (the server default; benchrun's server turns it off for bulk
// loads): with asynchronous commit a change reaches the walsender only when the WAL
// writer flushes, up to wal_writer_delay later, which would measure the server, not
// the consumer.
//
// At each rate, one after the other on the same table: the service with defaults and
// one webhook action (one request per event, its default workers), then the plain
// reader POSTing each change in turn (plain.go, -post). Each consumer gets a fresh
// slot, is warmed up by one row it must deliver first, and is stopped after the load
// once it has delivered every row the load committed. "Drain" is the time from the
// end of the load (pgbench exits) to the last arrival: the lag left when writes stop.

// liveRecorder is the receiver: it records the latency of every event it is sent.
type liveRecorder struct {
	mu   sync.Mutex
	lat  []arrival
	bad  int           // bodies without a usable commit_time
	last atomic.Int64  // unix nanoseconds of the latest arrival
	n    atomic.Int64  // events received
	pace chan struct{} // signalled on each arrival (buffer 1)
	// trace, when set (BENCH_LIVE_TRACE), gets one line per event: arrival (unix µs)
	// and latency (µs), for looking at where the slow events are.
	trace io.Writer
}

// arrival is one event at the receiver.
type arrival struct {
	commit time.Time
	lat    time.Duration // commit → arrival
}

var commitTimeRE = regexp.MustCompile(`"commit_time":"([^"]+)"`)

func (rec *liveRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	now := time.Now()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec.mu.Lock()
	if m := commitTimeRE.FindSubmatch(body); m != nil {
		if t, err := time.Parse(time.RFC3339Nano, string(m[1])); err == nil {
			rec.lat = append(rec.lat, arrival{commit: t, lat: now.Sub(t)})
			if rec.trace != nil {
				fmt.Fprintf(rec.trace, "%d %d\n", now.UnixMicro(), now.Sub(t).Microseconds())
			}
		} else {
			rec.bad++
		}
	} else {
		rec.bad++
	}
	rec.mu.Unlock()
	rec.last.Store(now.UnixNano())
	rec.n.Add(1)
	select {
	case rec.pace <- struct{}{}:
	default:
	}
}

// reset forgets everything recorded so far.
func (rec *liveRecorder) reset() {
	rec.mu.Lock()
	rec.lat, rec.bad = rec.lat[:0], 0
	rec.mu.Unlock()
	rec.n.Store(0)
}

// wait returns once want events have arrived, or fails after timeout without one.
func (rec *liveRecorder) wait(want int64, timeout time.Duration, exited <-chan error) error {
	for rec.n.Load() < want {
		select {
		case <-rec.pace:
		case err := <-exited:
			return fmt.Errorf("consumer exited: %v (%d of %d arrived)", err, rec.n.Load(), want)
		case <-time.After(timeout):
			return fmt.Errorf("timed out: %d of %d arrived", rec.n.Load(), want)
		}
	}
	return nil
}

// livePhase is one consumer at one rate.
type livePhase struct {
	events        int
	achieved      float64 // committed rows per second of load
	p50, p99, max time.Duration
	drain         time.Duration
	firstMax      time.Duration // the slowest event of the first second
	cpu           time.Duration
	bad           int
	walBehind     int64 // the most WAL the walsender had not sent yet (bytes, sampled)
}

type liveRun struct {
	srv     *pgtest.Server
	bin     string
	db      string
	dir     string
	url     string
	rec     *liveRecorder
	script  string
	loadFor time.Duration
}

// live runs the live webhook scenario at each rate for loadFor each.
func live(ctx context.Context, srv *pgtest.Server, bin string, rates []int, loadFor time.Duration) error {
	db, err := srv.CreateDatabase(ctx, "bench_live")
	if err != nil {
		return err
	}
	defer srv.DropDatabase(ctx, db)
	err = srv.Exec(ctx, db, `
CREATE TABLE live (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, n int NOT NULL, at timestamptz NOT NULL, payload jsonb NOT NULL);
CREATE PUBLICATION pub FOR TABLE live;`)
	if err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	dir, err := os.MkdirTemp("", "benchrun-live")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "insert.sql")
	// The same row shape as the catch-up backlog: ~100 bytes of text, ~200 of jsonb.
	err = os.WriteFile(script, []byte(`\set r random(1, 1000000000)
INSERT INTO live (body, n, at, payload) VALUES (repeat(md5(:r::bigint::text), 3), :r::bigint % 1000, now(), jsonb_build_object('ref', md5(:r::bigint::text), 'seq', :r::bigint, 'note', repeat('x', 100), 'tags', jsonb_build_array('a', 'b', 'c')));
`), 0o600)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	rec := &liveRecorder{pace: make(chan struct{}, 1)}
	hs := &http.Server{Handler: rec}
	go hs.Serve(ln)
	defer hs.Close()
	lr := &liveRun{srv: srv, bin: bin, db: db, dir: dir, url: "http://" + ln.Addr().String() + "/hook",
		rec: rec, script: script, loadFor: loadFor}

	fmt.Printf("## Live: single-row transactions at a fixed rate → webhook on loopback (%s of load per rate and consumer)\n\n", loadFor)
	fmt.Println("Latency is commit → arrival at the receiver (the event's commit timestamp against the receiver's clock, same host).")
	fmt.Println()
	fmt.Println("p50, p99 and max are of the steady state (events committed after the load's first second); the first second, with pgbench starting its clients, is shown apart.")
	fmt.Println("\"Walsender behind\" is the most WAL the consumer's walsender had not yet sent (pg_stat_replication.sent_lsn, sampled every 50 ms): large values mean events were late leaving PostgreSQL.")
	fmt.Println()
	fmt.Println("| target rate | consumer | committed/s | events | p50 | p99 | max | slowest of the first second | drain after the load | CPU per 1k events | walsender behind (max) |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, rate := range rates {
		for _, who := range []string{"service", "plain"} {
			ph, err := lr.phase(ctx, who, rate)
			if err != nil {
				return fmt.Errorf("%s at %d/s: %w", who, rate, err)
			}
			name := "fraiseql-observers, defaults → webhook"
			if who == "plain" {
				name = "plain reader, one POST per event in turn"
			}
			note := ""
			if ph.bad > 0 {
				note = fmt.Sprintf(" (%d without commit_time)", ph.bad)
			}
			fmt.Printf("| %d/s | %s | %.0f | %d%s | %s | %s | %s | %s | %s | %.0f ms | %d KiB |\n", rate, name, ph.achieved, ph.events, note,
				msd(ph.p50), msd(ph.p99), msd(ph.max), msd(ph.firstMax), msd(ph.drain), ph.cpu.Seconds()*1e6/float64(max(ph.events, 1)), ph.walBehind/1024)
		}
	}
	fmt.Println()
	return nil
}

func msd(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", d.Seconds()*1000)
}

// phase runs one consumer against one rate.
func (lr *liveRun) phase(ctx context.Context, who string, rate int) (livePhase, error) {
	slot := fmt.Sprintf("live_%s_%d", who, rate)
	if err := lr.srv.Exec(ctx, lr.db, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
		return livePhase{}, fmt.Errorf("slot: %w", err)
	}
	defer lr.srv.Exec(ctx, lr.db, `SELECT pg_drop_replication_slot($1)`, slot)
	cmd, log, err := lr.consumer(who, slot)
	if err != nil {
		return livePhase{}, err
	}
	exited := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return livePhase{}, err
	}
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
		}
	}
	defer stop()
	fail := func(err error) (livePhase, error) {
		stop()
		return livePhase{}, fmt.Errorf("%w\n%s", err, log.String())
	}

	// Warm up: the consumer is streaming once the first row has arrived.
	lr.rec.reset()
	if err := lr.insertOne(ctx); err != nil {
		return fail(err)
	}
	if err := lr.rec.wait(1, time.Minute, exited); err != nil {
		return fail(fmt.Errorf("warm-up: %w", err))
	}
	time.Sleep(500 * time.Millisecond)
	before, err := lr.count(ctx)
	if err != nil {
		return fail(err)
	}
	cpu0, _, err := procStat(cmd.Process.Pid)
	if err != nil {
		return fail(err)
	}
	lr.rec.reset()
	if d := os.Getenv("BENCH_LIVE_TRACE"); d != "" {
		f, err := os.Create(filepath.Join(d, fmt.Sprintf("%s_%d.txt", who, rate)))
		if err != nil {
			return fail(err)
		}
		lr.rec.mu.Lock()
		lr.rec.trace = f
		lr.rec.mu.Unlock()
		defer func() {
			lr.rec.mu.Lock()
			lr.rec.trace = nil
			lr.rec.mu.Unlock()
			f.Close()
		}()
	}

	bench := exec.CommandContext(ctx, filepath.Join(lr.srv.BinDir, "pgbench"), "-n", "-M", "prepared",
		"-h", "127.0.0.1", "-p", strconv.Itoa(lr.srv.Port), "-U", "postgres",
		"-c", "8", "-j", "2", "-R", strconv.Itoa(rate), "-T", strconv.Itoa(int(lr.loadFor.Seconds())),
		"-f", lr.script, lr.db)
	bench.Env = append(os.Environ(), "PGOPTIONS=-c synchronous_commit=on")
	var bout bytes.Buffer
	bench.Stdout, bench.Stderr = &bout, &bout
	behind := lr.sampleBehind(ctx, slot)
	defer behind()
	start := time.Now()
	if err := bench.Run(); err != nil {
		return fail(fmt.Errorf("pgbench: %w\n%s", err, bout.String()))
	}
	loadEnd := time.Now()
	after, err := lr.count(ctx)
	if err != nil {
		return fail(err)
	}
	want := after - before
	if err := lr.rec.wait(want, time.Minute, exited); err != nil {
		return fail(err)
	}
	cpu1, _, err := procStat(cmd.Process.Pid)
	if err != nil {
		return fail(err)
	}
	walBehind := behind()
	stop()

	// Steady state: events committed after the first second of the load. The first
	// second holds pgbench starting its clients (8 backends forked at once) and the
	// consumer's cold path (new connections to the receiver); it is reported apart.
	var ph livePhase
	var lat, first []time.Duration
	lr.rec.mu.Lock()
	for _, a := range lr.rec.lat {
		if a.commit.Before(start.Add(time.Second)) {
			first = append(first, a.lat)
		} else {
			lat = append(lat, a.lat)
		}
	}
	bad := lr.rec.bad
	lr.rec.mu.Unlock()
	slices.Sort(lat)
	slices.Sort(first)
	if len(first) > 0 {
		ph.firstMax = first[len(first)-1]
	}
	ph.events, ph.bad, ph.cpu, ph.walBehind = int(lr.rec.n.Load()), bad, cpu1-cpu0, walBehind
	ph.achieved = float64(want) / loadEnd.Sub(start).Seconds()
	ph.drain = max(0, time.Unix(0, lr.rec.last.Load()).Sub(loadEnd))
	if len(lat) > 0 {
		ph.p50, ph.p99, ph.max = pct(lat, 0.50), pct(lat, 0.99), lat[len(lat)-1]
	}
	if int64(ph.events) != want {
		return fail(fmt.Errorf("received %d events, the load committed %d", ph.events, want))
	}
	return ph, nil
}

// sampleBehind starts sampling, every 50ms, how much WAL the walsender of slot has not
// sent yet (pg_current_wal_lsn() − sent_lsn); the function it returns stops sampling
// (on its first call) and returns the largest sample. It tells whether late events
// were late leaving the server (decoding) or inside the consumer.
func (lr *liveRun) sampleBehind(ctx context.Context, slot string) func() int64 {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan int64, 1)
	go func() { done <- lr.sample(ctx, slot) }()
	return sync.OnceValue(func() int64 {
		cancel()
		return <-done
	})
}

func (lr *liveRun) sample(ctx context.Context, slot string) int64 {
	conn, err := lr.srv.Connect(ctx, lr.db)
	if err != nil {
		return -1
	}
	defer conn.Close(context.Background())
	var most int64
	for ctx.Err() == nil {
		var b int64
		err := conn.QueryRow(ctx, `SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), r.sent_lsn), 0)::bigint
FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1`, slot).Scan(&b)
		if err == nil {
			most = max(most, b)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return most
}

// pct is the q-quantile of sorted (nearest rank).
func pct(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// consumer builds the command of one consumer streaming slot to the receiver.
func (lr *liveRun) consumer(who, slot string) (*exec.Cmd, *bytes.Buffer, error) {
	var log bytes.Buffer
	var cmd *exec.Cmd
	switch who {
	case "service":
		cfg := fmt.Sprintf(`
source: {dsn: %q, slot: %s, publication: pub}
admin: {listen: %q}
logging: {level: warn}
observers:
  live:
    entity: live
    event_type: INSERT
    actions: [{type: webhook, url: %q, allow_private_networks: true}]
`, lr.srv.DSN(lr.db), slot, os.Getenv("BENCH_LIVE_ADMIN"), lr.url)
		path := filepath.Join(lr.dir, "config.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, nil, err
		}
		cmd = exec.Command(lr.bin, "start", "--config", path)
		if g := os.Getenv("BENCH_LIVE_GODEBUG"); g != "" {
			cmd.Env = append(os.Environ(), "GODEBUG="+g)
		}
	case "plain":
		self, err := os.Executable()
		if err != nil {
			return nil, nil, err
		}
		conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s replication=database", lr.srv.Port, lr.db)
		cmd = exec.Command(self, "-plain-reader", "-conninfo", conninfo, "-slot", slot, "-post", lr.url)
	}
	cmd.Stdout, cmd.Stderr = &log, &log
	if d := os.Getenv("BENCH_LIVE_LOG"); d != "" && who == "service" {
		f, err := os.Create(filepath.Join(d, slot+".log"))
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(f, "start %d\n", time.Now().UnixMicro())
		cmd.Stdout, cmd.Stderr = f, f
	}
	return cmd, &log, nil
}

func (lr *liveRun) insertOne(ctx context.Context) error {
	return lr.srv.Exec(ctx, lr.db, `INSERT INTO live (body, n, at, payload) VALUES ('warm-up', 0, now(), '{}')`)
}

func (lr *liveRun) count(ctx context.Context) (int64, error) {
	conn, err := lr.srv.Connect(ctx, lr.db)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int64
	err = conn.QueryRow(ctx, `SELECT count(*) FROM live`).Scan(&n)
	return n, err
}
