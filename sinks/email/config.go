package email

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observers/sinks"
)

// TLS modes of Config.TLS.
const (
	// TLSStartTLS connects in plain text and upgrades with STARTTLS before anything
	// else is sent; a server that does not offer STARTTLS gets no mail and no
	// credentials. The default; port 587.
	TLSStartTLS = "start_tls"
	// TLSImplicit speaks TLS from the first byte (SMTPS); port 465.
	TLSImplicit = "tls"
	// TLSNone sends everything in clear. Credentials are refused with it unless the
	// server is on the loopback interface.
	TLSNone = "none"
)

// Defaults.
const (
	DefaultTimeout  = 30 * time.Second
	DefaultHeloName = "localhost"
)

// Config configures an email action. Username and Password are the secrets
// themselves (the wiring code reads them from the environment); they never appear in
// errors or logs.
type Config struct {
	// Host is the SMTP server's name or address; it is also the name the server
	// certificate must be valid for.
	Host string
	// Port defaults to 587, or 465 with TLSImplicit.
	Port int
	// TLS is TLSStartTLS (default), TLSImplicit or TLSNone.
	TLS string
	// CAFile is a PEM file of certificates to trust instead of the system roots, for
	// a server with a certificate from a private CA. The certificate is always
	// verified, hostname included.
	CAFile string
	// Username and Password, when Username is set, authenticate with AUTH PLAIN,
	// only over TLS (or to a loopback server).
	Username string
	Password string
	// HeloName is the name sent with EHLO (default "localhost").
	HeloName string
	// Timeout bounds one message's whole SMTP conversation, from dialling to the
	// server's answer to the message (default 30s).
	Timeout time.Duration

	// From is the sender, an RFC 5322 address ("Shop <no-reply@example.com>"); it is
	// also the envelope sender (MAIL FROM).
	From string
	// To lists the recipients; each entry may hold several addresses separated by
	// commas. Exactly one of To and ToTemplate is required.
	To []string
	// ToTemplate renders the recipients per event (EscapeNone template), a
	// comma-separated address list.
	ToTemplate string
	// Subject is a static subject; SubjectTemplate renders one per event. Exactly one
	// is required.
	Subject         string
	SubjectTemplate string
	// BodyTemplate renders the plain-text UTF-8 body (required).
	BodyTemplate string
	// ReplyTo is an optional static address list for the Reply-To header.
	ReplyTo string
	// ActionID, when set, becomes part of the Message-ID, so two email actions of
	// one event produce distinct messages.
	ActionID string
}

func keyErr(key, format string, args ...any) error {
	return sinks.KeyErrorf(key, fmt.Errorf(format, args...))
}

// Validate checks the configuration and fills defaults. Its errors are
// *sinks.KeyError values naming the key as the YAML does. It reads CAFile.
func (c *Config) Validate() error {
	if c.Host == "" {
		return keyErr("smtp.host", "required")
	}
	if strings.ContainsAny(c.Host, " /\r\n") {
		return keyErr("smtp.host", "must be a host name or an IP address")
	}
	switch c.TLS {
	case "":
		c.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return keyErr("smtp.tls", "must be start_tls, tls or none, not %q", c.TLS)
	}
	if c.Port == 0 {
		c.Port = 587
		if c.TLS == TLSImplicit {
			c.Port = 465
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		return keyErr("smtp.port", "must be between 1 and 65535, not %d", c.Port)
	}
	if c.CAFile != "" {
		if c.TLS == TLSNone {
			return keyErr("smtp.ca_file", "has no use with tls: none")
		}
		if _, err := loadCAFile(c.CAFile); err != nil {
			return keyErr("smtp.ca_file", "%v", err)
		}
	}
	if c.Password != "" && c.Username == "" {
		return keyErr("smtp.password_env", "needs smtp.username_env")
	}
	if c.Username != "" && c.Password == "" {
		return keyErr("smtp.username_env", "needs smtp.password_env")
	}
	if c.Username != "" && c.TLS == TLSNone && !plainAuthLoopback(c.Host) {
		return keyErr("smtp.tls", "credentials would be sent in clear with tls: none; use start_tls or tls")
	}
	if c.HeloName == "" {
		c.HeloName = DefaultHeloName
	}
	if strings.ContainsAny(c.HeloName, " \r\n") {
		return keyErr("smtp.helo_name", "must be a host name")
	}
	if c.Timeout < 0 {
		return keyErr("smtp.timeout", "must not be negative")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}

	if c.From == "" {
		return keyErr("smtp.from", "required")
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return keyErr("smtp.from", "not an address: %v", err)
	}
	switch {
	case len(c.To) > 0 && c.ToTemplate != "":
		return keyErr("to_template", "to and to_template are mutually exclusive")
	case len(c.To) == 0 && c.ToTemplate == "":
		return keyErr("to", "one of to and to_template is required")
	}
	if len(c.To) > 0 {
		if _, err := parseAddressList(strings.Join(c.To, ",")); err != nil {
			return keyErr("to", "%v", err)
		}
	}
	switch {
	case c.Subject != "" && c.SubjectTemplate != "":
		return keyErr("subject_template", "subject and subject_template are mutually exclusive")
	case c.Subject == "" && c.SubjectTemplate == "":
		return keyErr("subject", "one of subject and subject_template is required")
	}
	if err := checkHeaderValue(c.Subject); err != nil {
		return keyErr("subject", "%v", err)
	}
	if c.BodyTemplate == "" {
		return keyErr("body_template", "required")
	}
	if c.ReplyTo != "" {
		if _, err := parseAddressList(c.ReplyTo); err != nil {
			return keyErr("reply_to", "%v", err)
		}
	}
	return nil
}

// IsLoopback reports whether host names the loopback interface ("localhost",
// 127.0.0.0/8, ::1), where plain SMTP does not leave the machine.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// plainAuthLoopback reports whether net/smtp's PlainAuth accepts host without TLS.
func plainAuthLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// loadCAFile reads a PEM file of CA certificates.
func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// parseAddressList parses a comma-separated RFC 5322 address list; an empty list is
// an error. Its errors never quote the input.
func parseAddressList(s string) ([]*mail.Address, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("no address")
	}
	if err := checkHeaderValue(s); err != nil {
		return nil, err
	}
	list, err := mail.ParseAddressList(s)
	if err != nil {
		return nil, fmt.Errorf("invalid address list: %v", err)
	}
	return list, nil
}
