package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

// pgProxy forwards loopback TCP connections to PostgreSQL. Replication connections
// (their startup message carries the replication parameter) can be frozen: from
// then on nothing is forwarded in either direction, and the sockets stay open, as
// when a network silently drops every packet.
type pgProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen chan struct{} // closed: replication connections open now are frozen
	repl   []*proxied    // replication connections seen so far
	conns  []net.Conn
}

type proxied struct {
	frozen <-chan struct{} // nil until the connection is frozen
	mu     sync.Mutex
}

func (c *proxied) freezeWith(ch <-chan struct{}) { c.mu.Lock(); c.frozen = ch; c.mu.Unlock() }

// stopped reports whether the connection is frozen.
func (c *proxied) stopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen == nil {
		return false
	}
	select {
	case <-c.frozen:
		return true
	default:
		return false
	}
}

func startProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target, frozen: make(chan struct{})}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *pgProxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	pc := &proxied{}
	p.mu.Lock()
	p.conns = append(p.conns, client, server)
	p.mu.Unlock()
	// The startup message arrives first (sslmode=disable: no SSLRequest before it).
	buf := make([]byte, 64<<10)
	n, err := client.Read(buf)
	if err != nil {
		client.Close()
		server.Close()
		return
	}
	if bytes.Contains(buf[:n], []byte("replication\x00database\x00")) {
		p.mu.Lock()
		p.repl = append(p.repl, pc)
		p.mu.Unlock()
	}
	if _, err := server.Write(buf[:n]); err != nil {
		client.Close()
		server.Close()
		return
	}
	go pump(server, client, pc)
	pump(client, server, pc)
}

// pump copies from src to dst until either fails; a frozen connection's bytes are
// read and dropped, and nothing is closed.
func pump(dst io.Writer, src io.Reader, pc *proxied) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if pc.stopped() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// freezeReplication freezes every replication connection open now; later ones
// are forwarded normally. It returns how many it froze.
func (p *pgProxy) freezeReplication() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan struct{})
	close(ch)
	for _, c := range p.repl {
		c.freezeWith(ch)
	}
	n := len(p.repl)
	p.repl = nil
	return n
}

// TestReplicationBlackhole is reliability test R4 (b): the network between the
// service and PostgreSQL starts dropping every packet of the replication
// connection, without closing it. The service notices the silence after
// receive_timeout, replaces the connection, waits out the old walsender (which
// PostgreSQL ends after wal_sender_timeout) and streams again; nothing is lost.
func TestReplicationBlackhole(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION obs_pub FOR TABLE t`)
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", db.Server.Port))
	dsn := fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&options=-c%%20wal_sender_timeout%%3D4s", proxy.ln.Addr(), db.Name)
	out := filepath.Join(t.TempDir(), "events.jsonl")
	cfg := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true, status_interval: 1s, receive_timeout: 3s,
         reconnect: {initial_delay: 200ms, max_delay: 1s}}
admin: {listen: ""}
observers:
  all:
    entity: t
    actions: [{type: file, path: %q}]
`, dsn, out))
	p := startService(t, nil, "start", "--config", cfg)
	waitFor(t, 30*time.Second, "the service to stream", func() bool { return slotActive(db, "obs_slot") })
	oldPID := pgtest.QueryValue[int32](db, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'obs_slot'`)
	db.Exec(`INSERT INTO t SELECT g FROM generate_series(1, 100) g`)
	waitFor(t, 30*time.Second, "the first 100 events", func() bool { return len(readEvents(t, out)) == 100 })

	if n := proxy.freezeReplication(); n == 0 { // the streaming one, and the one that created the slot
		t.Fatal("no replication connection went through the proxy")
	}
	db.Exec(`INSERT INTO t SELECT g FROM generate_series(101, 200) g`) // sent into the void
	waitFor(t, 60*time.Second, "the service to stream on a new connection", func() bool {
		pid := pgtest.QueryValue[int32](db, `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = 'obs_slot'`)
		return pid != 0 && pid != oldPID
	})
	db.Exec(`INSERT INTO t SELECT g FROM generate_series(201, 300) g`)
	waitFor(t, 60*time.Second, "all 300 rows", func() bool {
		seen := map[string]bool{}
		for _, ev := range readEvents(t, out) {
			seen[string(ev.New["id"])] = true
		}
		return len(seen) == 300
	})
	if code := p.stop(); code != 0 {
		t.Fatalf("unexpected exit code %d", code)
	}
	if !strings.Contains(p.output(), "no message from the server for") {
		t.Fatalf("the service did not report the silent connection:\n%s", p.output())
	}
}
