package sinktest

import (
	"net"
	"sync/atomic"
)

// CountingListener is a net.Listener that counts the connections it accepts, for
// tests that check whether a server was reached at all.
type CountingListener struct {
	net.Listener
	n atomic.Int64
}

// Accept waits for the next connection and counts it.
func (l *CountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// Accepted returns how many connections the listener has accepted. It is safe for
// concurrent use.
func (l *CountingListener) Accepted() int64 { return l.n.Load() }
