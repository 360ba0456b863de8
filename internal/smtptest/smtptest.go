// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on a free
// loopback port for tests, with a test CA generated at start for STARTTLS and
// implicit TLS, optional AUTH PLAIN, and hooks to refuse or stall commands.
package smtptest

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

// TLS modes of a Server.
const (
	StartTLS = "start_tls" // plain listener offering STARTTLS
	Implicit = "tls"       // TLS from the first byte
	None     = "none"      // no TLS at all
)

// Options configures a Server. The zero value is a STARTTLS server without AUTH.
type Options struct {
	TLS string
	// Username and Password, when set, make AUTH PLAIN mandatory before MAIL.
	Username, Password string
	// AllowInsecureAuth offers AUTH on a connection without TLS.
	AllowInsecureAuth bool
	// AuthReply, when set, answers every AUTH with the error it returns for the
	// credentials received (a server that echoes them, for redaction tests).
	AuthReply func(username, password string) error
	// Rcpt, when set, answers RCPT TO (nil accepts).
	Rcpt func(to string) error
	// Data, when set, answers a message after it was read; n counts messages from 1.
	// Return an *smtp.SMTPError to choose the reply code.
	Data func(n int) error
	// Stall, when set, makes every DATA wait until it is closed before answering.
	Stall chan struct{}
}

// Message is a message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	TLS  bool   // the transaction ran over TLS
	User string // the authenticated user, if any
}

// Server is a running SMTP server. Its methods are safe for concurrent use.
type Server struct {
	Host   string // "127.0.0.1"
	Port   int
	CAFile string // PEM file of the CA that signed the server's certificate

	opts  Options
	srv   *smtp.Server
	conns *sinktest.CountingListener
	mu    sync.Mutex
	msgs  []Message
	data  int
	mails int
	auths int
}

// Error is a shorthand for an SMTP reply error.
func Error(code int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: msg}
}

// Start starts a server on 127.0.0.1 and stops it when t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.TLS == "" {
		opts.TLS = StartTLS
	}
	s := &Server{opts: opts}
	certs := sinktest.NewCerts(t)
	s.CAFile = certs.CAFile
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, c: c}, nil
	}))
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	s.srv.AllowInsecureAuth = opts.AllowInsecureAuth
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	if opts.TLS == StartTLS {
		s.srv.TLSConfig = certs.Server
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Host = "127.0.0.1"
	s.Port = l.Addr().(*net.TCPAddr).Port
	s.conns = &sinktest.CountingListener{Listener: l}
	var ln net.Listener = s.conns
	if opts.TLS == Implicit {
		ln = tls.NewListener(ln, certs.Server)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		if opts.Stall != nil {
			select {
			case <-opts.Stall:
			default:
				close(opts.Stall)
			}
		}
		s.srv.Close()
		// go-smtp's Close misses a listener Serve has not registered yet.
		l.Close()
		<-done
	})
	return s
}

// Messages returns the accepted messages, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Connections returns how many TCP connections the server accepted.
func (s *Server) Connections() int { return int(s.conns.Accepted()) }

// Counts returns how many MAIL commands, DATA transfers and successful AUTHs the
// server saw.
func (s *Server) Counts() (mails, data, auths int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mails, s.data, s.auths
}

// session is one SMTP session.
type session struct {
	s    *Server
	c    *smtp.Conn
	user string
	from string
	to   []string
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if ss.s.opts.AuthReply != nil {
			return ss.s.opts.AuthReply(username, password)
		}
		if username != ss.s.opts.Username || password != ss.s.opts.Password {
			return smtp.ErrAuthFailed
		}
		ss.user = username
		ss.s.mu.Lock()
		ss.s.auths++
		ss.s.mu.Unlock()
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.s.mu.Lock()
	ss.s.mails++
	ss.s.mu.Unlock()
	if ss.s.opts.Username != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.opts.Rcpt != nil {
		if err := ss.s.opts.Rcpt(to); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.s.opts.Stall != nil {
		<-ss.s.opts.Stall
		return errors.New("stalled")
	}
	ss.s.mu.Lock()
	ss.s.data++
	n := ss.s.data
	ss.s.mu.Unlock()
	if ss.s.opts.Data != nil {
		if err := ss.s.opts.Data(n); err != nil {
			return err
		}
	}
	_, isTLS := ss.c.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, Message{From: ss.from, To: ss.to, Data: b, TLS: isTLS, User: ss.user})
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }
