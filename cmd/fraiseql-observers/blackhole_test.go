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
	repl   []*proxied // replication connections seen so far
	conns  []net.Conn
}

type proxied struct {
	mu       sync.Mutex
	toServer bool // bytes from the client are dropped
	toClient bool // bytes from the server are dropped
}

func (c *proxied) freeze(toServer, toClient bool) {
	c.mu.Lock()
	c.toServer, c.toClient = toServer, toClient
	c.mu.Unlock()
}

// stopped reports whether bytes going to the server (or to the client) are dropped.
func (c *proxied) stopped(toServer bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if toServer {
		return c.toServer
	}
	return c.toClient
}

func startProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, target: target}
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
	go pump(client, server, pc, false)
	pump(server, client, pc, true)
}

// pump copies from src to dst until either fails, then closes dst, as a network
// passes on the end of a connection. Bytes of a frozen direction are read and
// dropped, and its end is not passed on.
func pump(dst net.Conn, src io.Reader, pc *proxied, toServer bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			if !pc.stopped(toServer) {
				dst.Close()
			}
			return
		}
		if pc.stopped(toServer) {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// freezeReplication freezes every replication connection open now, in the
// directions given; later ones are forwarded normally. It returns how many it froze.
func (p *pgProxy) freezeReplication(toServer, toClient bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.repl {
		c.freeze(toServer, toClient)
	}
	n := len(p.repl)
	p.repl = nil
	return n
}

// TestReplicationNetworkFaults is reliability test R4 (b, d) through a proxy.
//
// Blackhole: the network starts dropping every packet of the replication
// connection, without closing it. The service notices the silence after
// receive_timeout, replaces the connection, waits out the old walsender (which
// PostgreSQL ends after wal_sender_timeout) and streams again.
//
// Status updates lost: only the packets from the service to PostgreSQL are dropped.
// PostgreSQL ends the walsender after wal_sender_timeout without replies; the service
// sees the connection end, reconnects and streams again.
//
// Either way nothing is lost.
func TestReplicationNetworkFaults(t *testing.T) {
	t.Run("blackhole", func(t *testing.T) { replicationFault(t, true, true) })
	t.Run("status updates lost", func(t *testing.T) {
		log := replicationFault(t, true, false)
		if !strings.Contains(log, "terminating walsender process due to replication timeout") {
			t.Fatalf("PostgreSQL did not end the walsender for want of status updates:\n%s", log)
		}
	})
}

// replicationFault streams 100 rows, freezes the replication connection in the
// directions given, and checks that the service streams again on a new connection
// and delivers every row. It returns what PostgreSQL logged after the freeze.
func replicationFault(t *testing.T, toServer, toClient bool) string {
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
	db.Exec(`INSERT INTO t SELECT g FROM generate_series(1, 100) g`)
	waitFor(t, 30*time.Second, "the first 100 events", func() bool { return len(readEvents(t, out)) == 100 })
	// Read the streaming walsender's pid only now: the slot is also active, briefly,
	// while the connection that created it holds it, so an earlier read can see
	// that walsender or, between the two, none (active_pid NULL).
	var oldPID int32
	waitFor(t, 30*time.Second, "the streaming walsender's pid", func() bool {
		oldPID = pgtest.QueryValue[int32](db, `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = 'obs_slot'`)
		return oldPID != 0
	})

	logStart := len(db.Server.Log())
	if n := proxy.freezeReplication(toServer, toClient); n == 0 { // the streaming one, and the one that created the slot
		t.Fatal("no replication connection went through the proxy")
	}
	db.Exec(`INSERT INTO t SELECT g FROM generate_series(101, 200) g`)
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
	if toClient && !strings.Contains(p.output(), "no message from the server for") {
		t.Fatalf("the service did not report the silent connection:\n%s", p.output())
	}
	return db.Server.Log()[logStart:]
}
