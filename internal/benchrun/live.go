package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// The live scenario: pgbench commits single-row INSERTs at a fixed rate (Poisson
// arrivals, pgbench -R) while a consumer streams them to a webhook receiver on
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
// With -live-together the consumers run at the same time, each on its own slot (on a
// shared machine this cancels the neighbours' noise out of the comparison, at the
// price of the consumers competing with each other); -live-consumers names them, and
// "service+GOGC=400" runs the service with that variable set (for trying a lever).
//
// Diagnostics: BENCH_LIVE_TRACE=dir writes every event's arrival (unix µs) and latency
// (µs) to dir/<consumer>_<rate>.txt; BENCH_LIVE_LOG=dir keeps the service's log there;
// BENCH_ADMIN=host:port serves the service's admin API (and /debug/pprof/) there.

// liveRecorder is the receiver of one consumer: it records the latency of every event.
type liveRecorder struct {
	mu    sync.Mutex
	lat   []arrival
	bad   int           // bodies without a usable commit_time
	trace io.Writer     // BENCH_LIVE_TRACE
	last  atomic.Int64  // unix nanoseconds of the latest arrival
	n     atomic.Int64  // events received
	pace  chan struct{} // signalled on each arrival (buffer 1)
}

// arrival is one event at the receiver.
type arrival struct {
	commit time.Time
	lat    time.Duration // commit → arrival
}

var commitTimeRE = regexp.MustCompile(`"commit_time":"([^"]+)"`)

func (rec *liveRecorder) record(body []byte, now time.Time) {
	rec.mu.Lock()
	if m := commitTimeRE.FindSubmatch(body); m == nil {
		rec.bad++
	} else if t, err := time.Parse(time.RFC3339Nano, string(m[1])); err != nil {
		rec.bad++
	} else {
		rec.lat = append(rec.lat, arrival{commit: t, lat: now.Sub(t)})
		if rec.trace != nil {
			fmt.Fprintf(rec.trace, "%d %d\n", now.UnixMicro(), now.Sub(t).Microseconds())
		}
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
func (rec *liveRecorder) wait(want int64, timeout time.Duration, c *liveConsumer) error {
	for rec.n.Load() < want {
		select {
		case <-rec.pace:
		case <-c.exited:
			return fmt.Errorf("consumer exited: %w (%d of %d arrived)", c.exitErr, rec.n.Load(), want)
		case <-time.After(timeout):
			return fmt.Errorf("timed out: %d of %d arrived", rec.n.Load(), want)
		}
	}
	return nil
}

// receiver routes /c/<i> to the recorder of consumer i.
type receiver []*liveRecorder

func (rs receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	now := time.Now()
	i, aerr := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/c/"))
	if err != nil || aerr != nil || i < 0 || i >= len(rs) {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	rs[i].record(body, now)
}

// liveConsumer is one consumer of the live scenario and, while it runs, its process.
type liveConsumer struct {
	name    string   // as given to -live-consumers
	kind    string   // service or plain
	env     []string // extra environment of the service
	url     string
	rec     *liveRecorder
	slot    string
	cmd     *exec.Cmd
	log     bytes.Buffer
	exited  chan struct{} // closed when the process has exited
	exitErr error         // the process's exit status, once exited is closed
	cpu0    time.Duration
	behind  func() int64
	stop    func()
	admin   string    // the service's admin API (host:port)
	hist0   histogram // its delivery latency histogram when the load began
}

func (c *liveConsumer) title() string {
	t := "fraiseql-observers, defaults → webhook"
	if c.kind == "plain" {
		t = "plain reader, one POST per event in turn"
	}
	if len(c.env) > 0 {
		t += " (" + strings.Join(c.env, " ") + ")"
	}
	return t
}

// parseConsumers reads -live-consumers: kind[+VAR=value...],...
func parseConsumers(s string) ([]*liveConsumer, error) {
	var cs []*liveConsumer
	for _, f := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(f), "+")
		c := &liveConsumer{name: strings.TrimSpace(f), kind: parts[0], env: parts[1:]}
		if c.kind != "service" && c.kind != "plain" || c.kind == "plain" && len(c.env) > 0 {
			return nil, fmt.Errorf("not a consumer: %q (service[+VAR=value...] or plain)", f)
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// livePhase is what one consumer showed at one rate.
type livePhase struct {
	events        int
	achieved      float64 // committed rows per second of load
	p50, p99, max time.Duration
	firstMax      time.Duration // the slowest event of the first second
	drain         time.Duration
	cpu           time.Duration
	bad           int
	walBehind     int64 // the most WAL the walsender had not sent yet (bytes, sampled)
	// inside50 and inside99 are the service's own routing → delivered latency
	// (observer_delivery_latency_seconds over the phase, seconds; NaN for the plain reader).
	inside50, inside99 float64
}

type liveRun struct {
	phases  int // phases run so far: slot names are never reused (the service keeps checkpoints per slot)
	srv     *pgtest.Server
	bin     string
	db      string
	dir     string
	script  string
	loadFor time.Duration
}

// liveOptions are the live scenario's parameters.
type liveOptions struct {
	rates     []int
	loadFor   time.Duration
	consumers string
	together  bool
}

// live runs the live webhook scenario.
func live(ctx context.Context, srv *pgtest.Server, bin string, o liveOptions) error {
	cs, err := parseConsumers(o.consumers)
	if err != nil {
		return err
	}
	lr, cleanup, err := newLiveRun(ctx, srv, bin, o.loadFor)
	if err != nil {
		return err
	}
	defer cleanup()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	rs := make(receiver, len(cs))
	for i, c := range cs {
		rs[i] = &liveRecorder{pace: make(chan struct{}, 1)}
		c.rec, c.url = rs[i], fmt.Sprintf("http://%s/c/%d", ln.Addr(), i)
	}
	hs := &http.Server{Handler: rs}
	go hs.Serve(ln)
	defer hs.Close()

	how := "one consumer after the other"
	if o.together {
		how = "all consumers at the same time, each on its own slot"
	}
	fmt.Printf("## Live: single-row transactions at a fixed rate → webhook on loopback (%s of load per rate, %s)\n\n", o.loadFor, how)
	fmt.Println("Latency is commit → arrival at the receiver: the event's commit timestamp against the receiver's clock, same host.")
	fmt.Println("p50, p99 and max are of the steady state (events committed after the load's first second); the first second,")
	fmt.Println("with pgbench starting its clients and the consumer opening its connections, is shown apart. \"Walsender behind\"")
	fmt.Println("is the most WAL the consumer's walsender had not sent yet (`pg_stat_replication.sent_lsn`, sampled every 50 ms).")
	fmt.Println("\"Inside the service\" is the service's own `observer_delivery_latency_seconds` over the load (from routing the")
	fmt.Println("event to its delivery, estimated from the histogram's buckets as histogram_quantile does): the rest of the")
	fmt.Println("commit → arrival time is spent before the service has the event (the commit's WAL flush, the walsender, the socket).")
	fmt.Println()
	fmt.Println("| target rate | consumer | committed/s | events | p50 | p99 | max | slowest of the first second | drain after the load | CPU per 1k events | walsender behind (max) | inside the service p50 / p99 |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, rate := range o.rates {
		groups := [][]*liveConsumer{cs}
		if !o.together {
			groups = nil
			for _, c := range cs {
				groups = append(groups, []*liveConsumer{c})
			}
		}
		for _, g := range groups {
			phs, err := lr.phase(ctx, g, rate)
			if err != nil {
				return fmt.Errorf("at %d/s: %w", rate, err)
			}
			for i, ph := range phs {
				note := ""
				if ph.bad > 0 {
					note = fmt.Sprintf(" (%d without commit_time)", ph.bad)
				}
				inside := "—"
				if !math.IsNaN(ph.inside99) {
					inside = ms(ph.inside50) + " / " + ms(ph.inside99)
				}
				fmt.Printf("| %d/s | %s | %.0f | %d%s | %s | %s | %s | %s | %s | %.0f ms | %d KiB | %s |\n", rate, g[i].title(),
					ph.achieved, ph.events, note, msd(ph.p50), msd(ph.p99), msd(ph.max), msd(ph.firstMax), msd(ph.drain),
					ph.cpu.Seconds()*1e6/float64(max(ph.events, 1)), ph.walBehind/1024, inside)
			}
		}
	}
	fmt.Println()
	return nil
}

// newLiveRun creates the database, its table and publication, and the pgbench script.
func newLiveRun(ctx context.Context, srv *pgtest.Server, bin string, loadFor time.Duration) (*liveRun, func(), error) {
	db, err := srv.CreateDatabase(ctx, "bench_live")
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "benchrun-live")
	if err != nil {
		srv.DropDatabase(ctx, db)
		return nil, nil, err
	}
	cleanup := func() {
		srv.DropDatabase(ctx, db)
		os.RemoveAll(dir)
	}
	err = srv.Exec(ctx, db, `
CREATE TABLE live (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, n int NOT NULL, at timestamptz NOT NULL, payload jsonb NOT NULL);
CREATE PUBLICATION pub FOR TABLE live;`)
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("schema: %w", err)
	}
	script := filepath.Join(dir, "insert.sql")
	// The same row shape as the catch-up backlog: ~100 bytes of text, ~200 of jsonb.
	err = os.WriteFile(script, []byte(`\set r random(1, 1000000000)
INSERT INTO live (body, n, at, payload) VALUES (repeat(md5(:r::bigint::text), 3), :r::bigint % 1000, now(), jsonb_build_object('ref', md5(:r::bigint::text), 'seq', :r::bigint, 'note', repeat('x', 100), 'tags', jsonb_build_array('a', 'b', 'c')));
`), 0o600)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return &liveRun{srv: srv, bin: bin, db: db, dir: dir, script: script, loadFor: loadFor}, cleanup, nil
}

func msd(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", d.Seconds()*1000)
}

// phase runs the consumers through one load at rate, all at the same time.
func (lr *liveRun) phase(ctx context.Context, cs []*liveConsumer, rate int) ([]livePhase, error) {
	lr.phases++
	for _, c := range cs {
		c.slot = fmt.Sprintf("live_%d_%d_%s", lr.phases, rate, sanitizeSlot(c.name))
		err := lr.start(ctx, c)
		defer c.stop()
		if err != nil {
			return nil, err
		}
	}
	fail := func(err error) ([]livePhase, error) {
		for _, c := range cs {
			c.stop()
			err = fmt.Errorf("%w\n%s: %s", err, c.name, c.log.String())
		}
		return nil, err
	}
	// Warm up: a consumer is streaming once a first row has reached the receiver.
	for _, c := range cs {
		c.rec.reset()
	}
	if err := lr.srv.Exec(ctx, lr.db, `INSERT INTO live (body, n, at, payload) VALUES ('warm-up', 0, now(), '{}')`); err != nil {
		return fail(err)
	}
	for _, c := range cs {
		if err := c.rec.wait(1, time.Minute, c); err != nil {
			return fail(fmt.Errorf("warm-up of %s: %w", c.name, err))
		}
	}
	time.Sleep(500 * time.Millisecond)
	before, err := lr.count(ctx)
	if err != nil {
		return fail(err)
	}
	for _, c := range cs {
		if c.cpu0, _, err = procStat(c.cmd.Process.Pid); err != nil {
			return fail(err)
		}
		c.rec.reset()
		if err := c.traceTo(os.Getenv("BENCH_LIVE_TRACE"), rate); err != nil {
			return fail(err)
		}
		c.behind = lr.sampleBehind(ctx, c.slot)
		if c.kind == "service" {
			if c.hist0, err = scrapeLatency(c.admin, "webhook"); err != nil {
				return fail(fmt.Errorf("%s: metrics: %w", c.name, err))
			}
		}
	}
	start, loadEnd, err := lr.load(ctx, rate)
	if err != nil {
		return fail(err)
	}
	after, err := lr.count(ctx)
	if err != nil {
		return fail(err)
	}
	want := after - before
	phs := make([]livePhase, len(cs))
	for i, c := range cs {
		if err := c.rec.wait(want, time.Minute, c); err != nil {
			return fail(fmt.Errorf("%s: %w", c.name, err))
		}
		cpu1, _, err := procStat(c.cmd.Process.Pid)
		if err != nil {
			return fail(err)
		}
		phs[i] = c.rec.summary(start, loadEnd)
		phs[i].cpu, phs[i].walBehind = cpu1-c.cpu0, c.behind()
		phs[i].achieved = float64(want) / loadEnd.Sub(start).Seconds()
		phs[i].inside50, phs[i].inside99 = math.NaN(), math.NaN()
		if c.kind == "service" {
			h, err := scrapeLatency(c.admin, "webhook")
			if err != nil {
				return fail(fmt.Errorf("%s: metrics: %w", c.name, err))
			}
			h = h.since(c.hist0)
			phs[i].inside50, phs[i].inside99 = h.quantile(0.5), h.quantile(0.99)
		}
		if int64(phs[i].events) != want {
			return fail(fmt.Errorf("%s received %d events, the load committed %d", c.name, phs[i].events, want))
		}
	}
	return phs, nil
}

// load runs pgbench at rate for lr.loadFor and returns when it started and ended.
func (lr *liveRun) load(ctx context.Context, rate int) (start, end time.Time, err error) {
	bench := exec.CommandContext(ctx, filepath.Join(lr.srv.BinDir, "pgbench"), "-n", "-M", "prepared",
		"-h", "127.0.0.1", "-p", strconv.Itoa(lr.srv.Port), "-U", "postgres",
		"-c", "8", "-j", "2", "-R", strconv.Itoa(rate), "-T", strconv.Itoa(int(lr.loadFor.Seconds())),
		"-f", lr.script, lr.db)
	bench.Env = append(os.Environ(), "PGOPTIONS=-c synchronous_commit=on")
	var out bytes.Buffer
	bench.Stdout, bench.Stderr = &out, &out
	start = time.Now()
	if err := bench.Run(); err != nil {
		return start, time.Now(), fmt.Errorf("pgbench: %w\n%s", err, out.String())
	}
	return start, time.Now(), nil
}

// summary computes the phase's figures from what the recorder holds. Steady state:
// events committed after the first second of the load; the first second holds pgbench
// starting its clients (8 backends forked at once) and the consumer's cold path (new
// connections to the receiver), so it is reported apart.
func (rec *liveRecorder) summary(start, loadEnd time.Time) livePhase {
	var lat, first []time.Duration
	rec.mu.Lock()
	for _, a := range rec.lat {
		if a.commit.Before(start.Add(time.Second)) {
			first = append(first, a.lat)
		} else {
			lat = append(lat, a.lat)
		}
	}
	ph := livePhase{bad: rec.bad, events: int(rec.n.Load())}
	if rec.trace != nil {
		if f, ok := rec.trace.(io.Closer); ok {
			f.Close()
		}
		rec.trace = nil
	}
	rec.mu.Unlock()
	slices.Sort(lat)
	slices.Sort(first)
	if len(first) > 0 {
		ph.firstMax = first[len(first)-1]
	}
	if len(lat) > 0 {
		ph.p50, ph.p99, ph.max = pct(lat, 0.50), pct(lat, 0.99), lat[len(lat)-1]
	}
	ph.drain = max(0, time.Unix(0, rec.last.Load()).Sub(loadEnd))
	return ph
}

// traceTo starts writing the recorder's events to dir (nothing when dir is empty).
func (c *liveConsumer) traceTo(dir string, rate int) error {
	if dir == "" {
		return nil
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s_%d.txt", sanitizeSlot(c.name), rate)))
	if err != nil {
		return err
	}
	c.rec.mu.Lock()
	c.rec.trace = f
	c.rec.mu.Unlock()
	return nil
}

func sanitizeSlot(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
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

// start creates the consumer's slot and starts its process; c.stop (safe to call more
// than once) stops the process and drops the slot.
func (lr *liveRun) start(ctx context.Context, c *liveConsumer) error {
	c.stop = func() {}
	c.log.Reset()
	if err := lr.srv.Exec(ctx, lr.db, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, c.slot); err != nil {
		return fmt.Errorf("slot: %w", err)
	}
	dropSlot := func() { lr.srv.Exec(ctx, lr.db, `SELECT pg_drop_replication_slot($1)`, c.slot) }
	cmd, err := lr.command(c)
	if err != nil {
		dropSlot()
		return err
	}
	if err := cmd.Start(); err != nil {
		dropSlot()
		return err
	}
	c.cmd, c.exited = cmd, make(chan struct{})
	go func() {
		c.exitErr = cmd.Wait()
		close(c.exited)
	}()
	c.stop = sync.OnceFunc(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-c.exited
		}
		if f, ok := cmd.Stderr.(*os.File); ok {
			f.Close()
		}
		dropSlot()
	})
	return nil
}

// command builds the command of one consumer streaming its slot to the receiver.
func (lr *liveRun) command(c *liveConsumer) (*exec.Cmd, error) {
	var cmd *exec.Cmd
	switch c.kind {
	case "service":
		// The admin API serves the latency histogram; BENCH_ADMIN=host:port
		// chooses its address (to profile the service under load at /debug/pprof/).
		c.admin = os.Getenv("BENCH_ADMIN")
		if c.admin == "" {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			c.admin = ln.Addr().String()
			ln.Close()
		}
		cfg := fmt.Sprintf(`
source: {dsn: %q, slot: %s, publication: pub}
admin: {listen: %q}
logging: {level: warn}
observers:
  live:
    entity: live
    event_type: INSERT
    actions: [{type: webhook, url: %q, allow_private_networks: true}]
`, lr.srv.DSN(lr.db), c.slot, c.admin, c.url)
		path := filepath.Join(lr.dir, c.slot+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		cmd = exec.Command(lr.bin, "start", "--config", path)
		cmd.Env = append(os.Environ(), c.env...)
	case "plain":
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s replication=database", lr.srv.Port, lr.db)
		cmd = exec.Command(self, "-plain-reader", "-conninfo", conninfo, "-slot", c.slot, "-post", c.url)
	}
	cmd.Stdout, cmd.Stderr = &c.log, &c.log
	if d := os.Getenv("BENCH_LIVE_LOG"); d != "" && c.kind == "service" {
		f, err := os.Create(filepath.Join(d, c.slot+".log"))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(f, "start %d\n", time.Now().UnixMicro())
		cmd.Stdout, cmd.Stderr = f, f
	}
	return cmd, nil
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
