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

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/eval"
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

// Config is the email action configuration (YAML keys of a `type: email`
// action). Zero values mean the documented defaults, which Defaults fills.
type Config struct {
	// To lists the recipients: a string, or a list of strings ([]string in Go),
	// each of which may hold several addresses separated by commas. Exactly one of
	// To and ToTemplate is required.
	To any `yaml:"to"`
	// ToTemplate renders the recipients per event (EscapeNone template), a
	// comma-separated address list.
	ToTemplate string `yaml:"to_template"`
	// Subject is a static subject; SubjectTemplate renders one per event. Exactly one
	// is required.
	Subject         string `yaml:"subject"`
	SubjectTemplate string `yaml:"subject_template"`
	// BodyTemplate renders the plain-text UTF-8 body (required).
	BodyTemplate string `yaml:"body_template"`
	// ReplyTo is an optional static address list for the Reply-To header.
	ReplyTo string `yaml:"reply_to"`
	// SMTP is the smtp block: the server and the sender. Its fields are promoted
	// (c.Host is c.SMTP.Host).
	SMTP `yaml:"smtp"`
}

// SMTP is the smtp block of an email action. Credentials come only from the
// environment (username_env, password_env); they never appear in errors or logs.
type SMTP struct {
	// Host is the SMTP server's name or address; it is also the name the server
	// certificate must be valid for.
	Host string `yaml:"host"`
	// Port defaults to 587, or 465 with TLSImplicit.
	Port int `yaml:"port"`
	// From is the sender, an RFC 5322 address ("Shop <no-reply@example.com>"); it is
	// also the envelope sender (MAIL FROM).
	From string `yaml:"from"`
	// TLS is TLSStartTLS (default), TLSImplicit or TLSNone.
	TLS string `yaml:"tls"`
	// CAFile is a PEM file of certificates to trust instead of the system roots, for
	// a server with a certificate from a private CA. The certificate is always
	// verified, hostname included.
	CAFile string `yaml:"ca_file"`
	// Username and Password, when Username is set, authenticate with AUTH PLAIN,
	// only over TLS (or to a loopback server).
	Username configs.Secret `yaml:"username_env,env"`
	Password configs.Secret `yaml:"password_env,env"`
	// HeloName is the name sent with EHLO (default "localhost").
	HeloName string `yaml:"helo_name"`
	// Timeout bounds one message's whole SMTP conversation, from dialling to the
	// server's answer to the message (default 30s).
	Timeout time.Duration `yaml:"timeout"`
}

func keyErr(key, format string, args ...any) error {
	return sinks.KeyErrorf(key, fmt.Errorf(format, args...))
}

// Defaults fills the keys left out: smtp.tls start_tls, smtp.port 587 (465 with
// tls), smtp.helo_name localhost, smtp.timeout 30s. Without an smtp block it
// fills nothing: Validate reports the block missing.
func (c *Config) Defaults() {
	if c.SMTP == (SMTP{}) {
		return
	}
	if c.TLS == "" {
		c.TLS = TLSStartTLS
	}
	if c.Port == 0 {
		c.Port = 587
		if c.TLS == TLSImplicit {
			c.Port = 465
		}
	}
	if c.HeloName == "" {
		c.HeloName = DefaultHeloName
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
}

// recipients returns To as a list of address lists.
func (c *Config) recipients() ([]string, error) {
	switch to := c.To.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{to}, nil
	case []string:
		return to, nil
	case []any:
		if len(to) == 0 {
			return nil, keyErr("to", "the list is empty")
		}
		out := make([]string, 0, len(to))
		for _, v := range to {
			s, ok := v.(string)
			if !ok {
				return nil, keyErr("to", "must be an address or a list of addresses")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, keyErr("to", "must be an address or a list of addresses")
}

// Templates implements sinks.Templater: to_template, subject_template, body_template.
func (c *Config) Templates() []sinks.TemplateSource {
	return sinks.SetTemplates(sinks.TemplateSource{Key: "to_template", Src: c.ToTemplate}, sinks.TemplateSource{Key: "subject_template", Src: c.SubjectTemplate}, sinks.TemplateSource{Key: "body_template", Src: c.BodyTemplate})
}

// Validate checks the configuration, compiling its templates and reading CAFile;
// it changes nothing, and zero values pass as their defaults. Its errors are
// *sinks.KeyError values naming the key as the YAML does (several template
// errors are joined).
func (c *Config) Validate() error {
	if c.SMTP == (SMTP{}) {
		return errors.New("smtp is required: a mapping with host, from and optionally port, tls, username_env, password_env")
	}
	to, err := c.recipients()
	if err != nil {
		return err
	}
	if c.To != nil && c.ToTemplate != "" {
		return keyErr("to_template", "to and to_template are mutually exclusive")
	}
	if c.Subject != "" && c.SubjectTemplate != "" {
		return keyErr("subject_template", "subject and subject_template are mutually exclusive")
	}
	var errs []error
	for _, t := range []struct{ key, src string }{
		{"to_template", c.ToTemplate}, {"subject_template", c.SubjectTemplate}, {"body_template", c.BodyTemplate},
	} {
		if t.src == "" {
			continue
		}
		if _, err := eval.CompileTemplate(t.src, eval.EscapeNone, eval.Options{}); err != nil {
			errs = append(errs, sinks.KeyErrorf(t.key, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if c.Host == "" {
		return keyErr("smtp.host", "required")
	}
	if strings.ContainsAny(c.Host, " /\r\n") {
		return keyErr("smtp.host", "must be a host name or an IP address")
	}
	mode := c.TLS
	switch mode {
	case "":
		mode = TLSStartTLS
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return keyErr("smtp.tls", "must be start_tls, tls or none, not %q", c.TLS)
	}
	if c.Port < 0 || c.Port > 65535 {
		return keyErr("smtp.port", "must be between 1 and 65535, not %d", c.Port)
	}
	if c.CAFile != "" {
		if mode == TLSNone {
			return keyErr("smtp.ca_file", "has no use with tls: none")
		}
		if _, err := loadCAFile(c.CAFile); err != nil {
			return keyErr("smtp.ca_file", "%v", err)
		}
	}
	if c.Password.IsSet() && !c.Username.IsSet() {
		return keyErr("smtp.password_env", "needs smtp.username_env")
	}
	if c.Username.IsSet() && !c.Password.IsSet() {
		return keyErr("smtp.username_env", "needs smtp.password_env")
	}
	if c.Username.IsSet() && mode == TLSNone && !plainAuthLoopback(c.Host) {
		return keyErr("smtp.tls", "credentials would be sent in clear with tls: none; use start_tls or tls")
	}
	if strings.ContainsAny(c.HeloName, " \r\n") {
		return keyErr("smtp.helo_name", "must be a host name")
	}
	if c.Timeout < 0 {
		return keyErr("smtp.timeout", "must not be negative")
	}

	if c.From == "" {
		return keyErr("smtp.from", "required")
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return keyErr("smtp.from", "not an address: %v", err)
	}
	if len(to) == 0 && c.ToTemplate == "" {
		return keyErr("to", "one of to and to_template is required")
	}
	if len(to) > 0 {
		if _, err := parseAddressList(strings.Join(to, ",")); err != nil {
			return keyErr("to", "%v", err)
		}
	}
	if c.Subject == "" && c.SubjectTemplate == "" {
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

// Warnings reports a server reached in clear text (smtp.tls: none) that is not on
// the loopback interface.
func (c *Config) Warnings() []error {
	if c.TLS == TLSNone && !IsLoopback(c.Host) {
		return []error{keyErr("smtp.tls", "email: smtp.tls is none: messages travel in clear text to a host that is not loopback")}
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
		return nil, fmt.Errorf("invalid address list: %w", err)
	}
	return list, nil
}
