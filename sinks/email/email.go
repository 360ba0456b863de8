// Package email is the email action: one plain-text message per event, sent over
// SMTP with net/smtp. TLS is required by default (STARTTLS, or implicit TLS), the
// server certificate is always verified, and credentials go only over TLS. Every
// message carries a Message-ID derived from the event id and the X-FraiseQL-Event-ID
// header, so a retried message is recognisable as the same message.
//
// See docs/actions/email.md for the configuration keys and how failures are
// classified.
package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Sink sends one email per event. It is safe for concurrent use: each delivery uses
// its own SMTP connection, closed when the message is accepted or refused.
type Sink struct {
	cfg     Config
	id      string // the action's, in Message-IDs
	meta    eval.Meta
	now     func() time.Time
	addr    string
	tls     *tls.Config // nil with TLSNone
	from    *mail.Address
	to      []*mail.Address
	replyTo []*mail.Address
	toT     *eval.Template
	subjT   *eval.Template
	bodyT   *eval.Template
}

// New fills cfg's defaults, validates it, compiles its templates and reads its
// CA file. It does not connect and starts no goroutine. deps.ActionID becomes
// part of the Message-ID, so two email actions of one event produce distinct
// messages; deps.Now gives the Date header.
func New(_ context.Context, cfg Config, deps sinks.Deps) (*Sink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Username.Known() || !cfg.Password.Known() {
		return nil, keyErr("smtp.username_env", "unknown: its environment variable is not set")
	}
	s := &Sink{cfg: cfg, id: deps.ActionID, meta: deps.Templates.Meta, now: deps.Clock(),
		addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))}
	if cfg.TLS != TLSNone {
		s.tls = &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pool, err := loadCAFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("smtp.ca_file: %w", err)
			}
			s.tls.RootCAs = pool
		}
	}
	var err error
	if s.from, err = mail.ParseAddress(cfg.From); err != nil {
		return nil, fmt.Errorf("smtp.from: %w", err)
	}
	to, err := cfg.recipients()
	if err != nil {
		return nil, err
	}
	if len(to) > 0 {
		if s.to, err = parseAddressList(strings.Join(to, ",")); err != nil {
			return nil, fmt.Errorf("to: %w", err)
		}
	}
	if cfg.ReplyTo != "" {
		if s.replyTo, err = parseAddressList(cfg.ReplyTo); err != nil {
			return nil, fmt.Errorf("reply_to: %w", err)
		}
	}
	for _, t := range []struct {
		key, src string
		dst      **eval.Template
	}{
		{"to_template", cfg.ToTemplate, &s.toT},
		{"subject_template", cfg.SubjectTemplate, &s.subjT},
		{"body_template", cfg.BodyTemplate, &s.bodyT},
	} {
		if t.src == "" {
			continue
		}
		if *t.dst, err = deps.Templates.Compile(t.src, eval.EscapeNone); err != nil {
			return nil, fmt.Errorf("%s: %w", t.key, err)
		}
	}
	return s, nil
}

// Deliver renders the message for ev and sends it. It returns nil once the server
// has accepted the message (250 after DATA). Errors are *sinks.Error values: SMTP 5xx
// replies, render failures and invalid rendered addresses are permanent; 4xx replies,
// connection, TLS and timeout failures are transient.
func (s *Sink) Deliver(ctx context.Context, ev *decoder.Event) error {
	msg, err := s.render(ev)
	if err != nil {
		return err
	}
	return s.send(ctx, msg)
}

// render builds the message for ev. It never sends anything.
func (s *Sink) render(ev *decoder.Event) (*message, error) {
	env := eval.NewEnv(ev, s.meta)
	to := s.to
	if s.toT != nil {
		text, err := s.toT.Render(env)
		if err != nil {
			return nil, sinks.Permanent("template", fmt.Errorf("render to_template: %w", err))
		}
		if checkHeaderValue(text) != nil {
			return nil, sinks.Permanent("header_injection", errors.New("to_template rendered a line break: refused (header injection)"))
		}
		if to, err = parseAddressList(text); err != nil {
			// The reason is not given: net/mail quotes parts of the input, a row value.
			return nil, sinks.Permanent("invalid_address", errors.New("to_template did not render a valid address list"))
		}
	}
	subject := s.cfg.Subject
	if s.subjT != nil {
		var err error
		if subject, err = s.subjT.Render(env); err != nil {
			return nil, sinks.Permanent("template", fmt.Errorf("render subject_template: %w", err))
		}
		if checkHeaderValue(subject) != nil {
			return nil, sinks.Permanent("header_injection", errors.New("subject_template rendered a line break: refused (header injection)"))
		}
	}
	body, err := s.bodyT.Render(env)
	if err != nil {
		return nil, sinks.Permanent("template", fmt.Errorf("render body_template: %w", err))
	}
	id := ev.ID.String()
	hs := []header{
		{name: "Date", value: dateHeader(s.now())},
		{name: "From", addresses: []*mail.Address{s.from}},
		{name: "To", addresses: to},
	}
	if s.replyTo != nil {
		hs = append(hs, header{name: "Reply-To", addresses: s.replyTo})
	}
	hs = append(hs,
		header{name: "Subject", value: strings.TrimSpace(subject)},
		header{name: "Message-ID", value: messageID(id, s.id)},
		header{name: eventHeader, value: id},
	)
	data, err := buildMessage(hs, body)
	if err != nil {
		return nil, sinks.Permanent("invalid_header", err)
	}
	return &message{from: s.from, to: to, data: data}, nil
}

// send runs one SMTP conversation, bounded by the configured timeout and ctx.
func (s *Sink) send(ctx context.Context, msg *message) error {
	deadline := time.Now().Add(s.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return s.classify(ctx, "dial", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return s.classify(ctx, "dial", err)
	}
	// Cancelling ctx interrupts any read or write in progress.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if s.cfg.TLS == TLSImplicit {
		tc := tls.Client(conn, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return s.classify(ctx, "tls handshake", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, s.cfg.Host)
	if err != nil {
		return s.classify(ctx, "greeting", err)
	}
	defer c.Close()
	if err := c.Hello(s.cfg.HeloName); err != nil {
		return s.classify(ctx, "EHLO", err)
	}
	if s.cfg.TLS == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return sinks.Transient("starttls_unavailable", errors.New("smtp: the server does not offer STARTTLS; nothing was sent (tls: start_tls requires it)"), 0)
		}
		if err := c.StartTLS(s.tls); err != nil {
			return s.classify(ctx, "STARTTLS", err)
		}
	}
	if s.cfg.Username.IsSet() {
		if ok, _ := c.Extension("AUTH"); !ok {
			return sinks.Transient("auth_unavailable", errors.New("smtp: the server does not offer AUTH; nothing was sent"), 0)
		}
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username.Value(), s.cfg.Password.Value(), s.cfg.Host)); err != nil {
			return s.classify(ctx, "AUTH", err)
		}
	}
	if err := c.Mail(msg.from.Address); err != nil {
		return s.classify(ctx, "MAIL FROM", err)
	}
	for _, a := range msg.to {
		if err := c.Rcpt(a.Address); err != nil {
			return s.classify(ctx, "RCPT TO", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return s.classify(ctx, "DATA", err)
	}
	if _, err := w.Write(msg.data); err != nil {
		return s.classify(ctx, "DATA", err)
	}
	if err := w.Close(); err != nil { // the server's answer to the message
		return s.classify(ctx, "end of DATA", err)
	}
	c.Quit() // the message is accepted; a failing QUIT changes nothing
	return nil
}

// classify turns an SMTP conversation error into a *sinks.Error. A server's reply
// is kept for the operator, with credentials and addresses taken out (redactReply).
func (s *Sink) classify(ctx context.Context, step string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.Canceled) {
			return fmt.Errorf("smtp %s: %w", step, cerr)
		}
		return sinks.Transient("timeout", fmt.Errorf("smtp %s: %w", step, cerr), 0)
	}
	var reply *textproto.Error
	if errors.As(err, &reply) {
		e := fmt.Errorf("smtp %s: server replied %d %s", step, reply.Code, redactReply(reply.Msg, s.cfg.Username.Value(), s.cfg.Password.Value()))
		class := "smtp_" + strconv.Itoa(reply.Code)
		switch {
		case reply.Code >= 500 && reply.Code < 600:
			return sinks.Permanent(class, e)
		case reply.Code >= 400 && reply.Code < 500:
			return sinks.Transient(class, e, 0)
		}
		return sinks.Transient("smtp_protocol", e, 0)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return sinks.Transient("timeout", fmt.Errorf("smtp %s: %w", step, err), 0)
	}
	if isTLSError(err) {
		return sinks.Transient("tls", fmt.Errorf("smtp %s: %w", step, err), 0)
	}
	return sinks.Transient("connection", fmt.Errorf("smtp %s: %w", step, err), 0)
}

// isTLSError reports whether err is a TLS or certificate failure.
func isTLSError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		alert    tls.AlertError
		header   tls.RecordHeaderError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &header) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

// redactReply keeps a server reply's text for errors, logs and the DLQ, without what
// could be a credential or a row value:
//   - a line that mentions AUTH (a server echoing the command, with its base64
//     credentials) is replaced as a whole;
//   - words holding the configured user name or password, in clear or base64
//     (also inside a SASL PLAIN blob), a base64 word that decodes to text with
//     a NUL (a SASL PLAIN response), and the word after "password", "secret" or "token" (or
//     the value of such a key=value) become [redacted];
//   - words holding an "@" become [address]: replies often echo the recipient,
//     which is a row value.
//
// The result is one line of at most 200 bytes (and "...").
func redactReply(msg, username, password string) string {
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		words := strings.Fields(line)
		if slices.ContainsFunc(words, func(w string) bool { return strings.EqualFold(strings.Trim(w, ".,:;()[]<>\"'"), "AUTH") }) {
			out = append(out, "[AUTH line redacted]")
			continue
		}
		for i, w := range words {
			switch {
			case i > 0 && credentialKey(words[i-1]):
				words[i] = "[redacted]"
			case credentialWord(w, username, password):
				words[i] = "[redacted]"
			case strings.Contains(w, "@"):
				words[i] = "[address]"
			}
		}
		out = append(out, words...)
	}
	s := strings.Join(out, " ")
	if len(s) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// credentialKey reports whether w names a secret whose value follows it
// ("password", "Password:", "token=").
func credentialKey(w string) bool {
	w = strings.ToLower(strings.TrimRight(w, ":="))
	switch w {
	case "password", "passwd", "pass", "pwd", "secret", "token":
		return true
	}
	return false
}

// credentialWord reports whether w is or holds a credential: the configured user
// name (3 bytes or more) or password, in clear or base64, a key=value whose key
// names a secret, or base64 that decodes to text holding a NUL (a SASL PLAIN
// response).
func credentialWord(w, username, password string) bool {
	if k, _, ok := strings.Cut(w, "="); ok && credentialKey(k) {
		return true
	}
	secrets := []string{password}
	if len(username) >= 3 {
		secrets = append(secrets, username)
	}
	for _, sec := range secrets {
		if sec != "" && strings.Contains(w, sec) {
			return true
		}
	}
	token := strings.Trim(w, ".,:;()[]<>\"'")
	if len(token) < 8 {
		return false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
		b, err := enc.DecodeString(token)
		if err != nil {
			continue
		}
		if bytes.IndexByte(b, 0) >= 0 { // SASL PLAIN: authzid NUL user NUL password
			return true
		}
		for _, sec := range secrets {
			if sec != "" && bytes.Contains(b, []byte(sec)) {
				return true
			}
		}
	}
	return false
}
