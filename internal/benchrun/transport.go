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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	svc "github.com/fraiseql/fraiseql-observers/service"
	"github.com/fraiseql/fraiseql-observers/sinks/webhook"
)

// The transport scenario: one backlog of single-row transactions, each row delivered
// by one webhook action to a receiver on loopback that answers every request after
// receiverDelay (concurrently: a request never waits for another). Consumed, one case
// after the other, each from its own slot created before the data:
//
//   - in-process: one `start` (role all) with defaults and the webhook action;
//   - transport.type nats with one reader (`start --role reader`) and 1, 2 and 3
//     executor processes (`start --role executor`), all with defaults apart from the
//     transport's url, stream and subject prefix (a fresh stream per case) on a
//     nats-server -js that benchrun starts on a free loopback port with its own store.
//
// The executors are started first and the clock starts when the reader starts, once
// the executors own the partitions as rendezvous hashing assigns them (a join moves
// partitions within lease_ttl/3, so executors started together settle in seconds;
// that settling is shown apart). The in-process service's clock starts with its
// process. The clock stops when the receiver has answered every event once (by
// Idempotency-Key, repeats counted apart). CPU (user + system) and peak RSS (VmHWM)
// come from /proc at that moment, the executors' CPU less what they used before the
// clock started; the CPU of nats-server, of PostgreSQL (postmaster, its live children
// and its reaped children) and of benchrun itself (the receiver) over the same
// interval show where the machine's cores went.

// receiverDelay is how long the receiver takes to answer each request.
const receiverDelay = 2 * time.Millisecond

// transportCase is one consumer of the backlog: executors 0 is the in-process mode.
type transportCase struct {
	executors int
	slot      string
}

func (c transportCase) title() string {
	if c.executors == 0 {
		return "in-process (`start`, role all)"
	}
	s := "s"
	if c.executors == 1 {
		s = ""
	}
	return fmt.Sprintf("nats: reader + %d executor%s", c.executors, s)
}

// transportResult is what one case measured.
type transportResult struct {
	dur    time.Duration
	settle time.Duration // executors: from their start to the settled assignment
	cpu    time.Duration // the service's processes, summed
	procs  []procFigures
	nats   time.Duration // nats-server's CPU over dur
	pg     time.Duration // PostgreSQL's CPU over dur
	self   time.Duration // benchrun's (the receiver's) CPU over dur
	busy   time.Duration // summed time the receiver's requests were open
	// published is when the reader had every event acknowledged by JetStream
	// (sampled with inflight).
	published time.Duration
	// inflight is the most observer_inflight_bytes a delivering process reported
	// (sampled every 100 ms).
	inflight int64
	repeats  int64
}

// procFigures is one process's share of a case.
type procFigures struct {
	name string
	cpu  time.Duration
	peak int64 // KiB
}

// hookRecorder counts one case's deliveries.
type hookRecorder struct {
	mu      sync.Mutex
	seen    map[string]struct{}
	unique  atomic.Int64
	repeats atomic.Int64
	busy    atomic.Int64 // nanoseconds the case's requests were open, summed
}

// slowReceiver answers POST /c/<case> after receiverDelay and records the event id.
type slowReceiver []*hookRecorder

func (rs slowReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	_, err := io.Copy(io.Discard, r.Body)
	i, aerr := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/c/"))
	id := r.Header.Get(webhook.HeaderIdempotencyKey)
	if err != nil || aerr != nil || i < 0 || i >= len(rs) || id == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	time.Sleep(receiverDelay) // the simulated receiver's work, concurrent across requests
	rec := rs[i]
	rec.mu.Lock()
	_, dup := rec.seen[id]
	rec.seen[id] = struct{}{}
	rec.mu.Unlock()
	if dup {
		rec.repeats.Add(1)
	} else {
		rec.unique.Add(1)
	}
	rec.busy.Add(int64(time.Since(start)))
}

// transportBench runs the transport scenario with events single-row transactions.
func transportBench(ctx context.Context, srv *pgtest.Server, bin string, events int) error {
	cases := []transportCase{{0, "inproc_slot"}, {1, "nats1_slot"}, {2, "nats2_slot"}, {3, "nats3_slot"}}
	slots := make([]string, len(cases))
	for i, c := range cases {
		slots[i] = c.slot
	}
	db, err := backlog(ctx, srv, "bench_transport", events, 1, slots...)
	if err != nil {
		return err
	}
	defer srv.DropDatabase(ctx, db)
	dir, err := os.MkdirTemp("", "benchrun")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	natsURL, stopNATS, err := startNATS(dir)
	if err != nil {
		return err
	}
	defer stopNATS()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	rs := make(slowReceiver, len(cases))
	for i := range rs {
		rs[i] = &hookRecorder{seen: make(map[string]struct{}, events)}
	}
	hs := &http.Server{Handler: rs}
	go hs.Serve(ln)
	defer hs.Close()
	tb := &transportRun{srv: srv, bin: bin, db: db, dir: dir, natsURL: natsURL.url, natsPID: natsURL.pid, events: events,
		env: strings.Fields(os.Getenv("BENCH_TRANSPORT_ENV")), extra: os.Getenv("BENCH_TRANSPORT_EXTRA")}
	results := make([]transportResult, len(cases))
	for i, c := range cases {
		tb.hookURL, tb.rec = fmt.Sprintf("http://%s/c/%d", ln.Addr(), i), rs[i]
		if results[i], err = tb.run(ctx, c); err != nil {
			return fmt.Errorf("%s: %w", c.title(), err)
		}
	}
	printTransport(cases, results, events)
	if len(tb.env) > 0 || tb.extra != "" {
		fmt.Printf("Not defaults: every process ran with environment %q and configuration %q added.\n\n", tb.env, tb.extra)
	}
	return nil
}

// natsServer is the nats-server benchrun started.
type natsServer struct {
	url string
	pid int
}

// startNATS starts nats-server -js on a free loopback port with its store under dir.
func startNATS(dir string) (natsServer, func(), error) {
	addr, err := freeAddr()
	if err != nil {
		return natsServer{}, nil, err
	}
	conf := fmt.Sprintf("listen: %s\njetstream { store_dir: %q }\n", addr, filepath.Join(dir, "js"))
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return natsServer{}, nil, err
	}
	cmd := exec.Command("nats-server", "-c", path)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return natsServer{}, nil, fmt.Errorf("start nats-server: %w", err)
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return natsServer{url: "nats://" + addr, pid: cmd.Process.Pid}, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return natsServer{}, nil, fmt.Errorf("nats-server does not listen on %s: %w\n%s", addr, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// transportRun holds what every case of the scenario shares.
type transportRun struct {
	srv     *pgtest.Server
	bin     string
	db      string
	dir     string
	natsURL string
	natsPID int
	events  int
	env     []string      // BENCH_TRANSPORT_ENV: VAR=value added to every process's environment
	extra   string        // BENCH_TRANSPORT_EXTRA: YAML added to every process's configuration
	hookURL string        // this case's receiver path
	rec     *hookRecorder // this case's recorder
}

// benchProc is one fraiseql-observers process of a case.
type benchProc struct {
	name   string
	admin  string
	cmd    *exec.Cmd
	log    bytes.Buffer
	exited chan struct{}
	cpu0   time.Duration // CPU used before the clock started
	owned  int           // executors: partitions owned when the clock started
}

// config returns the configuration of one process of case c.
func (tb *transportRun) config(c transportCase, name, admin string) string {
	cfg := fmt.Sprintf(`listener_id: %s
source: {dsn: %q, slot: %s, publication: pub}
admin: {listen: %q}
logging: {level: warn}
`, name, tb.srv.DSN(tb.db), c.slot, admin)
	if c.executors > 0 {
		cfg += fmt.Sprintf("transport: {type: nats, url: %q, stream: bench_%d, subject_prefix: bench.e%d}\n", tb.natsURL, c.executors, c.executors)
	}
	return cfg + tb.extra + "\n" + fmt.Sprintf(`observers:
  all:
    entity: events
    event_type: INSERT
    actions: [{type: webhook, url: %q, allow_private_networks: true}]
`, tb.hookURL)
}

// start runs one process of case c with role ("" for the default).
func (tb *transportRun) start(c transportCase, name, role string) (*benchProc, error) {
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(tb.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(tb.config(c, name, admin)), 0o600); err != nil {
		return nil, err
	}
	args := []string{"start", "--config", path}
	if role != "" {
		args = append(args, "--role", role)
	}
	p := &benchProc{name: name, admin: admin, cmd: exec.Command(tb.bin, args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), tb.env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

// stop ends the process (SIGTERM, SIGKILL after a minute) and waits for it.
func (p *benchProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// failed returns an error naming a process of ps that exited, with its log.
func failed(ps []*benchProc) error {
	for _, p := range ps {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.cmd.ProcessState, p.log.String())
		default:
		}
	}
	return nil
}

// run measures case c.
func (tb *transportRun) run(ctx context.Context, c transportCase) (transportResult, error) {
	var res transportResult
	var procs []*benchProc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	if c.executors > 0 {
		t0 := time.Now()
		for i := range c.executors {
			p, err := tb.start(c, fmt.Sprintf("executor-%d", i+1), svc.RoleExecutor)
			if err != nil {
				return res, err
			}
			procs = append(procs, p)
		}
		if err := waitAssigned(ctx, procs, c.executors); err != nil {
			return res, err
		}
		res.settle = time.Since(t0)
		for _, p := range procs {
			ts, err := transportStatus(p.admin)
			if err != nil {
				return res, fmt.Errorf("status of %s: %w", p.name, err)
			}
			if ts.Executor == nil {
				return res, fmt.Errorf("the status of %s has no executor", p.name)
			}
			for _, part := range ts.Partitions { // as the bucket holds them: Owned may lag
				if part.Owner == ts.Executor.ID {
					p.owned++
				}
			}
			cpu, _, err := procUsage(p.cmd.Process.Pid)
			if err != nil {
				return res, err
			}
			p.cpu0 = cpu
		}
	}
	before, err := tb.machineCPU()
	if err != nil {
		return res, err
	}
	role, name := svc.RoleReader, "reader"
	if c.executors == 0 {
		role, name = "", "service"
	}
	start := time.Now()
	p, err := tb.start(c, name, role)
	if err != nil {
		return res, err
	}
	procs = append([]*benchProc{p}, procs...)
	delivering := procs
	if c.executors > 0 {
		delivering = procs[1:]
	}
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan int64, 1)
	var reader *benchProc
	if c.executors > 0 {
		reader = p
	}
	go func() { sampled <- sampleInflight(sctx, delivering, reader, tb.events, start, &res.published) }()
	err = tb.waitDelivered(ctx, procs)
	res.dur = time.Since(start)
	stopSampling()
	res.inflight = <-sampled
	if err != nil {
		return res, err
	}
	after, err := tb.machineCPU()
	if err != nil {
		return res, err
	}
	res.nats, res.pg, res.self = after[0]-before[0], after[1]-before[1], after[2]-before[2]
	for _, p := range procs {
		cpu, peak, err := procUsage(p.cmd.Process.Pid)
		if err != nil {
			return res, err
		}
		res.cpu += cpu - p.cpu0
		name := p.name
		if p.cmd.Args[len(p.cmd.Args)-1] == svc.RoleExecutor {
			name = fmt.Sprintf("%s (%d partitions)", p.name, p.owned)
		}
		res.procs = append(res.procs, procFigures{name, cpu - p.cpu0, peak})
	}
	res.busy, res.repeats = time.Duration(tb.rec.busy.Load()), tb.rec.repeats.Load()
	return res, nil
}

// waitDelivered waits until the receiver has answered every event of the backlog.
func (tb *transportRun) waitDelivered(ctx context.Context, procs []*benchProc) error {
	deadline := time.Now().Add(30 * time.Minute)
	for tb.rec.unique.Load() < int64(tb.events) {
		if err := failed(procs); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out: %d of %d delivered", tb.rec.unique.Load(), tb.events)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// machineCPU returns the CPU used so far by nats-server, by PostgreSQL (the
// postmaster, its reaped children and its live ones) and by benchrun itself.
func (tb *transportRun) machineCPU() ([3]time.Duration, error) {
	var out [3]time.Duration
	var err error
	if out[0], _, err = procUsage(tb.natsPID); err != nil {
		return out, err
	}
	if out[1], err = treeCPU(tb.srv.DataDir); err != nil {
		return out, err
	}
	out[2], _, err = procUsage(os.Getpid())
	return out, err
}
