package transport

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/pipeline"
)

// helperEnv makes the test binary run as an executor process (helperMain), so
// tests can SIGKILL and SIGSTOP a real executor.
const helperEnv = "FRAISEQL_TRANSPORT_TEST_EXECUTOR"

// helperMain runs an executor delivering every event by HTTP POST to
// $RECEIVER with the headers X-Executor, X-Event-Id and X-Row, until SIGTERM.
func helperMain() int {
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	cfg := testConfig(os.Getenv("NATS_URL"))
	cfg.Partitions, _ = strconv.Atoi(os.Getenv("PARTITIONS"))
	id, receiver := os.Getenv(helperEnv), os.Getenv("RECEIVER")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, err := Connect(cfg, log)
	if err != nil {
		log.Error().Err(err).Msg("connect")
		return 1
	}
	defer c.Close()
	client := &http.Client{}
	e, err := NewExecutor(c, ExecutorOptions{ID: id, Logger: log, NewPipeline: func(g *Generation) (*pipeline.Pipeline, error) {
		sink := func() pipeline.Sink { return httpSink{client: client, url: receiver, id: id, gen: g.ID()} }
		return newPipeline(sink, log)(g)
	}})
	if err != nil {
		log.Error().Err(err).Msg("executor")
		return 1
	}
	if err := e.Run(ctx); err != nil {
		log.Error().Err(err).Msg("executor stopped")
		return 1
	}
	return 0
}

type httpSink struct {
	client  *http.Client
	url, id string
	gen     uint64
}

func (s httpSink) Deliver(ctx context.Context, ev *decoder.Event) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(ev.JSON()))
	if err != nil {
		return err
	}
	req.Header.Set("X-Executor", s.id)
	req.Header.Set("X-Event-Id", ev.ID.String())
	req.Header.Set("X-Row", rowKey(ev))
	req.Header.Set("X-Generation", strconv.FormatUint(s.gen, 10))
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}

// receiver is the independent oracle of the process tests: an HTTP server that
// records each delivery when it arrives, with the phase of the test at that time.
// It can hold the requests of one executor until released.
type receiver struct {
	*oracle
	srv     *httptest.Server
	phase   atomic.Int32
	mu      sync.Mutex
	late    []delivery // deliveries that arrived in phase 1
	holdFor string
	held    atomic.Int32
	release chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{oracle: &oracle{}, release: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		gen, _ := strconv.ParseUint(req.Header.Get("X-Generation"), 10, 64)
		d := delivery{executor: req.Header.Get("X-Executor"), id: req.Header.Get("X-Event-Id"), key: req.Header.Get("X-Row"), gen: gen}
		r.add(d)
		if r.phase.Load() == 1 {
			r.mu.Lock()
			r.late = append(r.late, d)
			r.mu.Unlock()
		}
		r.mu.Lock()
		hold := d.executor == r.holdFor
		r.mu.Unlock()
		if hold {
			r.held.Add(1)
			select {
			case <-r.release:
			case <-req.Context().Done():
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(func() {
		select {
		case <-r.release:
		default:
			close(r.release)
		}
		r.srv.Close()
	})
	return r
}

// executorProc is an executor process (the test binary as helperMain).
type executorProc struct {
	id  string
	cmd *exec.Cmd
	out sinktest.LockedBuffer
}

func startExecutorProc(t *testing.T, id, url, recv string, partitions int) *executorProc {
	t.Helper()
	p := &executorProc{id: id}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), helperEnv+"="+id, "NATS_URL="+url, "RECEIVER="+recv, "PARTITIONS="+strconv.Itoa(partitions))
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("executor %s output:\n%s", id, p.out.String())
		}
	})
	return p
}

func (p *executorProc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to executor %s: %v", sig, p.id, err)
	}
}

// proxy forwards TCP connections to target; while frozen it forwards nothing, so
// a client behind it can neither reach the server nor learn that it cannot. While
// dropping it discards what the server sends (the client's requests still reach
// the server): messages lost in transit.
type proxy struct {
	ln       net.Listener
	target   string
	frozen   atomic.Bool
	dropping atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.pipe(s, c, false) }()
			go func() { defer p.wg.Done(); p.pipe(c, s, true) }()
		}
	}()
	t.Cleanup(func() {
		p.frozen.Store(false)
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) pipe(dst, src net.Conn, fromServer bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.frozen.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if fromServer && p.dropping.Load() {
			n = 0
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// cut closes every connection forwarded so far; the clients connect again.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

// owners returns the executor owning each partition ("" for none).
func owners(t *testing.T, c *Client) []string {
	t.Helper()
	os, _, err := c.Owners(sinktest.Context(t))
	if err != nil {
		return nil
	}
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.Owner
	}
	return out
}

func ownsAll(t *testing.T, c *Client, id string) bool {
	got := owners(t, c)
	if len(got) == 0 {
		return false
	}
	for _, o := range got {
		if o != id {
			return false
		}
	}
	return true
}

func ownsSome(t *testing.T, c *Client, ids ...string) bool {
	got := map[string]bool{}
	for _, o := range owners(t, c) {
		got[o] = true
	}
	for _, id := range ids {
		if !got[id] {
			return false
		}
	}
	return true
}

func (o *oracle) by(executor string) int {
	n := 0
	for _, d := range o.snapshot() {
		if d.executor == executor {
			n++
		}
	}
	return n
}

// SIGKILL an executor while events stream in: its partitions move to the other
// within a bounded time, nothing is lost, each row's order holds, and repeats are
// only of events already delivered (same ids).
func TestExecutorKilledUnderLoad(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(url)
	cfg.Partitions = 8
	c, _ := connect(t, cfg)
	r, _ := startPublisher(t, c)
	recv := newReceiver(t)
	a := startExecutorProc(t, "a", url, recv.srv.URL, cfg.Partitions)
	startExecutorProc(t, "b", url, recv.srv.URL, cfg.Partitions)
	waitFor(t, time.Minute, "both executors owning partitions", func() bool { return ownsSome(t, c, "a", "b") })
	evs := sinktest.Events(6000, 300)
	done := make(chan struct{})
	go func() { defer close(done); r.push(t, evs) }()
	waitFor(t, time.Minute, "executor a delivering", func() bool { return recv.by("a") >= 300 })
	a.signal(t, syscall.SIGKILL)
	<-done
	// The lease TTL (2s) bounds the move; the deadline only guards the test.
	waitFor(t, time.Minute, "executor b owning every partition", func() bool { return ownsAll(t, c, "b") })
	waitDrained(t, c, recv.oracle, len(evs), 2*time.Minute)
	repeats := recv.check(t, evs)
	t.Logf("delivered by a: %d, repeats: %d", recv.by("a"), repeats)
}

// A paused executor loses its partitions; when it resumes it cannot deliver or
// ack the events it held: they were delivered by the new owner, its late acks are
// fenced, and the generation that was paused delivers nothing more. Its link to
// NATS stays frozen for a while after it resumes, so only its own lease deadline
// can tell it that it lost its partitions. (When a is back it rejoins, and
// partitions move to it again in a new generation.)
func TestPausedExecutorIsFenced(t *testing.T) {
	_, url := startNATS(t)
	cfg := testConfig(url)
	cfg.Partitions = 8
	c, _ := connect(t, cfg)
	r, _ := startPublisher(t, c)
	recv := newReceiver(t)
	recv.holdFor = "a"
	link := startProxy(t, strings.TrimPrefix(url, "nats://"))
	a := startExecutorProc(t, "a", link.url(), recv.srv.URL, cfg.Partitions)
	startExecutorProc(t, "b", url, recv.srv.URL, cfg.Partitions)
	waitFor(t, time.Minute, "both executors owning partitions", func() bool { return ownsSome(t, c, "a", "b") })
	evs := sinktest.Events(4000, 200)
	r.push(t, evs[:2000])
	// Every worker of a (8, see newPipeline) is held in the receiver, so none is
	// between its fence check and its request when a is stopped: a delivery under
	// way when a process freezes is not recalled by any fence.
	waitFor(t, time.Minute, "every worker of executor a holding a delivery", func() bool { return recv.held.Load() >= 8 })
	a.signal(t, syscall.SIGSTOP)
	link.frozen.Store(true)
	waitFor(t, time.Minute, "executor b owning every partition", func() bool { return ownsAll(t, c, "b") })
	waitDrained(t, c, recv.oracle, 2000, 2*time.Minute)
	// The generations a was in when it was paused: none of them may deliver again.
	var paused uint64
	for _, d := range recv.snapshot() {
		if d.executor == "a" {
			paused = max(paused, d.gen)
		}
	}
	recv.phase.Store(1)
	a.signal(t, syscall.SIGCONT)
	close(recv.release) // a's held deliveries complete: its acks for them must be fenced
	waitFor(t, time.Minute, "executor a fencing its late acks", func() bool {
		return bytes.Contains(a.out.Bytes(), []byte("transport ack fenced"))
	})
	link.frozen.Store(false)
	r.push(t, evs[2000:])
	waitDrained(t, c, recv.oracle, len(evs), 2*time.Minute)
	recv.mu.Lock()
	late := append([]delivery(nil), recv.late...)
	recv.mu.Unlock()
	for _, d := range late {
		if d.executor == "a" && d.gen <= paused {
			t.Fatalf("executor a delivered %s after resuming in generation %d, which had lost its partitions", d.id, d.gen)
		}
	}
	recv.check(t, evs)
}
