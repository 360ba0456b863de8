package pgtest

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards loopback TCP connections to a PostgreSQL server. Its replication
// connections (their startup message carries the replication parameter) can be
// frozen: from then on nothing is forwarded in the frozen directions while both
// sockets stay open, as when a network silently drops every packet.
type Proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  []net.Conn
	repl   []*proxied // replication connections not frozen yet
	closed bool
	rate   int // bytes per second to clients of replication connections; 0 is unlimited
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

// StartProxy listens on a free loopback port and forwards to target (host:port)
// until the test ends; its goroutines end with it.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	t.Cleanup(p.close)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c)
			}()
		}
	}()
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// FreezeReplication freezes every replication connection open now in the
// directions given (later ones are forwarded normally) and returns how many it froze.
func (p *Proxy) FreezeReplication(toServer, toClient bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.repl {
		c.freeze(toServer, toClient)
	}
	n := len(p.repl)
	p.repl = nil
	return n
}

// Throttle caps what each replication connection opened from now on receives from
// the server at bytesPerSecond, so that a test can bound how fast a client streams
// whatever else runs on the machine (0 lifts the cap).
func (p *Proxy) Throttle(bytesPerSecond int) {
	p.mu.Lock()
	p.rate = bytesPerSecond
	p.mu.Unlock()
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track remembers c to close it at the end; false when the proxy is closed already.
func (p *Proxy) track(c ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns = append(p.conns, c...)
	return true
}

func (p *Proxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(client, server) {
		client.Close()
		if server != nil {
			server.Close()
		}
		return
	}
	pc := &proxied{}
	// The startup message arrives first (sslmode=disable: no SSLRequest before it).
	buf := make([]byte, 64<<10)
	n, err := client.Read(buf)
	if err != nil {
		client.Close()
		server.Close()
		return
	}
	rate := 0
	if bytes.Contains(buf[:n], []byte("replication\x00database\x00")) {
		p.mu.Lock()
		p.repl = append(p.repl, pc)
		rate = p.rate
		p.mu.Unlock()
	}
	if _, err := server.Write(buf[:n]); err != nil {
		client.Close()
		server.Close()
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		pump(client, server, pc, false, rate)
	}()
	pump(server, client, pc, true, 0)
}

// pump copies from src to dst until either fails, then closes dst, as a network
// passes on the end of a connection. Bytes of a frozen direction are read and
// dropped, and its end is not passed on. A positive rate caps the bytes per second
// passed on.
func pump(dst net.Conn, src io.Reader, pc *proxied, toServer bool, rate int) {
	buf := make([]byte, 32<<10)
	if rate > 0 {
		buf = buf[:max(min(len(buf), rate/20), 1)] // at most 1/20 s worth per write
	}
	start, sent := time.Now(), 0
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
		if rate > 0 {
			sent += n
			if ahead := time.Duration(sent)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
}
