package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fraiseql/fraiseql-observers/sinks"
)

// MaxResponseBytes is how much of a response body the sinks read at most; the rest
// is discarded with the connection.
const MaxResponseBytes = 64 << 10

// MaxRetryAfter caps the delay a target may ask for with Retry-After, so that one
// answer cannot park an event for days.
const MaxRetryAfter = time.Hour

// ReadCapped reads at most limit bytes of body and closes it. Read errors are
// ignored: the status line already decided the outcome.
func ReadCapped(body io.ReadCloser, limit int64) []byte {
	b, _ := io.ReadAll(io.LimitReader(body, limit))
	body.Close()
	return b
}

// Drain reads at most MaxResponseBytes of body, discards them and closes body (a
// fully read small body lets the connection be reused).
func Drain(body io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(body, MaxResponseBytes))
	body.Close()
}

// StatusError classifies a response status that is not 2xx, following the
// Standard Webhooks etiquette:
//
//	3xx                  permanent  http_<code>  (redirects are not followed, or a
//	                                             307/308 without a usable Location)
//	408, 429, 5xx        transient  http_<code>  honouring Retry-After
//	410                  permanent  http_410     (the receiver is gone)
//	other 4xx            permanent  http_<code>
//	anything else        transient  http_invalid_status
//
// detail, when not empty, is appended to the message (a receiver's short error
// code); it must not hold row values.
func StatusError(resp *http.Response, now time.Time, detail string) error {
	code := resp.StatusCode
	class := "http_" + strconv.Itoa(code)
	msg := fmt.Sprintf("http %d %s", code, http.StatusText(code))
	if detail != "" {
		msg += ": " + detail
	}
	switch {
	case code >= 300 && code < 400:
		return sinks.Permanent(class, errors.New(msg+" (redirects are not followed)"))
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 && code < 600:
		return sinks.Transient(class, errors.New(msg), RetryAfter(resp.Header.Get("Retry-After"), now))
	case code >= 400 && code < 500:
		return sinks.Permanent(class, errors.New(msg))
	}
	return sinks.Transient("http_invalid_status", errors.New(msg), 0)
}

// RetryAfter parses a Retry-After value, delay-seconds or an HTTP date, into a
// delay from now, capped at MaxRetryAfter. An absent, invalid or past value is 0.
func RetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		if n > uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	switch {
	case d < 0:
		return 0
	case d > MaxRetryAfter:
		return MaxRetryAfter
	}
	return d
}

// TransportError classifies an error of http.Client.Do (no response):
//
//	parent ctx done                    the context's error, unclassified (shutdown)
//	guard refused the target           permanent  ssrf_blocked
//	redirect not followed              permanent  too_many_redirects | redirect_method
//	TLS certificate not trusted        permanent  tls_verify
//	request deadline exceeded          transient  timeout
//	DNS failure                        transient  dns
//	connection refused / reset / EOF   transient  connection
//	anything else (malformed response) transient  transport
//
// The message names the method and redacted URL (scheme and host only), never the
// URL's path or query, which may hold a token.
func TransportError(ctx context.Context, method string, u *url.URL, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s: %w", method, RedactURL(u), ctx.Err())
	}
	wrapped := fmt.Errorf("%s %s: %w", method, RedactURL(u), err)
	var be *BlockedError
	var re *RedirectError
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &be):
		return sinks.Permanent("ssrf_blocked", wrapped)
	case errors.As(err, &re):
		return sinks.Permanent(re.Class, wrapped)
	case isTLSVerify(err):
		return sinks.Permanent("tls_verify", wrapped)
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return sinks.Transient("timeout", wrapped, 0)
	case errors.As(err, &dns):
		return sinks.Transient("dns", wrapped, 0)
	case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE):
		return sinks.Transient("connection", wrapped, 0)
	}
	return sinks.Transient("transport", wrapped, 0)
}

func isTLSVerify(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// RedactURL returns scheme://host of u, for logs and errors: paths, queries and
// user info often carry tokens (a Slack webhook URL is a credential).
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
