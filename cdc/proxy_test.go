package cdc

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
)

// silentProxy forwards loopback TCP connections to PostgreSQL. Its replication
// connections (their startup message carries the replication parameter) can be
// silenced: from then on nothing is forwarded in either direction while both sockets
// stay open, as when a network drops every packet without closing anything.
type silentProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  []net.Conn
	repl   []*atomicFlag // silenced flags of the replication connections seen so far
	closed bool
}

type atomicFlag struct {
	mu sync.Mutex
	on bool
}

func (f *atomicFlag) set() {
	f.mu.Lock()
	f.on = true
	f.mu.Unlock()
}

func (f *atomicFlag) get() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.on
}

// startSilentProxy listens on a free loopback port and forwards to target until the
// test ends; its goroutines end with it.
func startSilentProxy(t *testing.T, target string) *silentProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silentProxy{ln: ln, target: target}
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

func (p *silentProxy) addr() string { return p.ln.Addr().String() }

func (p *silentProxy) close() {
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
func (p *silentProxy) track(c ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns = append(p.conns, c...)
	return true
}

func (p *silentProxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(client, server) {
		client.Close()
		if server != nil {
			server.Close()
		}
		return
	}
	silenced := &atomicFlag{}
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
		p.repl = append(p.repl, silenced)
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
		pump(server, client, silenced)
	}()
	pump(client, server, silenced)
}

// pump copies from src to dst until either fails, then closes dst, as a network
// passes on the end of a connection. Once silenced it reads and drops, and passes
// nothing on, not even the end.
func pump(dst net.Conn, src io.Reader, silenced *atomicFlag) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			if !silenced.get() {
				dst.Close()
			}
			return
		}
		if silenced.get() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// silenceReplication silences every replication connection open now (later ones are
// forwarded normally) and returns how many it silenced.
func (p *silentProxy) silenceReplication() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.repl {
		f.set()
	}
	n := len(p.repl)
	p.repl = nil
	return n
}
