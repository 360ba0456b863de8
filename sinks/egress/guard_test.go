package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// server starts an HTTP server on addr ("127.0.0.1:0") that counts accepted
// connections.
func server(t *testing.T, addr string, h http.Handler) (*httptest.Server, *sinktest.CountingListener) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := &sinktest.CountingListener{Listener: l}
	s := httptest.NewUnstartedServer(h)
	s.Listener = cl
	s.Start()
	t.Cleanup(s.Close)
	return s, cl
}

// resolver maps names to addresses; each lookup takes the next answer of the name.
type resolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func newResolver(m map[string][]string) *resolver {
	r := &resolver{answers: map[string][][]netip.Addr{}, calls: map[string]int{}}
	for name, addrs := range m {
		for _, a := range addrs {
			r.answers[name] = append(r.answers[name], []netip.Addr{netip.MustParseAddr(a)})
		}
	}
	return r
}

func (r *resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.answers[host]
	if len(a) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(a)-1)
	r.calls[host]++
	return a[i], nil
}

func get(t *testing.T, c *http.Client, raw string) (*http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, raw, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err == nil {
		Drain(resp.Body)
	}
	return resp, err
}

func port(s *httptest.Server) string {
	return fmt.Sprint(s.Listener.Addr().(*net.TCPAddr).Port)
}

func wantClass(t *testing.T, err error, class string) {
	t.Helper()
	if err == nil || sinks.Class(err) != class {
		t.Fatalf("unexpected error; got %v (class %q); want class %q", err, sinks.Class(err), class)
	}
}

func TestDialGuardNeverConnects(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	s, l := server(t, "127.0.0.1:0", ok)
	res := newResolver(map[string][]string{"hooks.test": {"127.0.0.1"}, "mapped.test": {"::ffff:127.0.0.1"}})
	g, err := New(Options{Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	c := g.Client(ClientOptions{})
	defer c.CloseIdleConnections()
	p := port(s)
	for _, target := range []string{
		"http://127.0.0.1:" + p + "/",
		"http://localhost:" + p + "/",
		"http://hooks.test:" + p + "/",  // a name the resolver maps to 127.0.0.1
		"http://mapped.test:" + p + "/", // ... and to ::ffff:127.0.0.1
		"http://[::ffff:127.0.0.1]:" + p + "/",
		"http://2130706433:" + p + "/",
		"http://0x7f000001:" + p + "/",
		"http://0177.0.0.1:" + p + "/",
		"http://evil@127.0.0.1:" + p + "/",
	} {
		_, err := get(t, c, target)
		var be *BlockedError
		if !errors.As(err, &be) {
			t.Fatalf("unexpected result for %s; got %v; want a *BlockedError", target, err)
		}
		wantClass(t, TransportError(t.Context(), "POST", mustURL(t, target), err), "ssrf_blocked")
	}
	if n := l.Accepted(); n != 0 {
		t.Fatalf("unexpected accepted connections; got %d; want 0", n)
	}
	// IPv6 loopback, when the machine has it.
	if l6, err := net.Listen("tcp", "[::1]:0"); err == nil {
		cl := &sinktest.CountingListener{Listener: l6}
		s6 := httptest.NewUnstartedServer(ok)
		s6.Listener = cl
		s6.Start()
		defer s6.Close()
		_, err := get(t, c, "http://[::1]:"+port(s6)+"/")
		var be *BlockedError
		if !errors.As(err, &be) || cl.Accepted() != 0 {
			t.Fatalf("unexpected result for [::1]; got %v and %d connections; want a *BlockedError and 0", err, cl.Accepted())
		}
	}
	// The same server is reachable once allow-listed.
	g2, err := New(Options{Policy: Policy{AllowedHosts: []string{"127.0.0.1/32"}}, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	c2 := g2.Client(ClientOptions{})
	defer c2.CloseIdleConnections()
	for _, target := range []string{"http://127.0.0.1:" + p + "/", "http://hooks.test:" + p + "/"} {
		if resp, err := get(t, c2, target); err != nil || resp.StatusCode != 200 {
			t.Fatalf("unexpected result for allow-listed %s; got %v", target, err)
		}
	}
	if l.Accepted() == 0 {
		t.Fatal("unexpected: the allow-listed requests made no connection")
	}
}

// TestDNSRebinding: the name first resolves to an allowed address, then to a blocked
// one; the second connection is refused at dial time.
func TestDNSRebinding(t *testing.T) {
	s, l := server(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // force a new dial, and a new lookup, next time
	}))
	p := port(s)
	_, l2 := server(t, "127.0.0.2:"+p, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	res := newResolver(map[string][]string{"rebind.test": {"127.0.0.1", "127.0.0.2"}})
	g, err := New(Options{Policy: Policy{AllowedHosts: []string{"127.0.0.1/32"}}, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	c := g.Client(ClientOptions{})
	defer c.CloseIdleConnections()
	if _, err := get(t, c, "http://rebind.test:"+p+"/"); err != nil {
		t.Fatalf("unexpected error on the first request: %v", err)
	}
	_, err = get(t, c, "http://rebind.test:"+p+"/")
	var be *BlockedError
	if !errors.As(err, &be) || be.Addr != netip.MustParseAddr("127.0.0.2") || be.Host != "rebind.test" {
		t.Fatalf("unexpected second request; got %v; want blocked 127.0.0.2 for rebind.test", err)
	}
	if l.Accepted() != 1 || l2.Accepted() != 0 {
		t.Fatalf("unexpected connections; got %d to 127.0.0.1 and %d to 127.0.0.2; want 1 and 0", l.Accepted(), l2.Accepted())
	}
}

func TestRedirects(t *testing.T) {
	var target atomic.Value
	s, _ := server(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/final":
			body, _ := io.ReadAll(r.Body)
			if string(body) != "{}" {
				w.WriteHeader(400)
			}
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusTemporaryRedirect)
		case "/302":
			http.Redirect(w, r, "/final", http.StatusFound)
		default:
			http.Redirect(w, r, target.Load().(string), http.StatusTemporaryRedirect)
		}
	}))
	p := port(s)
	_, l2 := server(t, "127.0.0.2:"+p, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	res := newResolver(map[string][]string{"inner.test": {"127.0.0.2"}})
	policy := Policy{AllowedHosts: []string{"127.0.0.1/32"}}
	g, err := New(Options{Policy: policy, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	follow := g.Client(ClientOptions{FollowRedirects: true})
	defer follow.CloseIdleConnections()
	base := "http://127.0.0.1:" + p

	for _, tc := range []struct{ to, class string }{
		{"http://169.254.169.254/latest/meta-data/", "ssrf_blocked"}, // refused before any dial
		{"http://10.0.0.1/", "ssrf_blocked"},
		{"http://127.0.0.2:" + p + "/", "ssrf_blocked"},
		{"http://inner.test:" + p + "/", "ssrf_blocked"}, // refused at dial time
		{"file:///etc/passwd", "ssrf_blocked"},
		{"http://0x7f000001:" + p + "/", "ssrf_blocked"},
	} {
		target.Store(tc.to)
		_, err := get(t, follow, base+"/go")
		wantClass(t, TransportError(t.Context(), "POST", mustURL(t, base), err), tc.class)
	}
	if l2.Accepted() != 0 {
		t.Fatalf("unexpected connections to the redirect target; got %d; want 0", l2.Accepted())
	}
	// A 302 would turn the POST into a GET without the body.
	_, err = get(t, follow, base+"/302")
	wantClass(t, TransportError(t.Context(), "POST", mustURL(t, base), err), "redirect_method")
	_, err = get(t, follow, base+"/loop")
	wantClass(t, TransportError(t.Context(), "POST", mustURL(t, base), err), "too_many_redirects")
	// A 307 to an allowed target is followed with the body.
	target.Store(base + "/final")
	if resp, err := get(t, follow, base+"/go"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("unexpected result of an allowed redirect; got %v, %v", resp, err)
	}
	// Without following, the 3xx comes back and is a permanent failure.
	plain := g.Client(ClientOptions{})
	defer plain.CloseIdleConnections()
	resp, err := get(t, plain, base+"/go")
	if err != nil {
		t.Fatal(err)
	}
	wantClass(t, StatusError(resp, time.Now(), ""), "http_307")
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f := func(v string, want time.Duration) {
		t.Helper()
		if got := RetryAfter(v, now); got != want {
			t.Fatalf("unexpected RetryAfter(%q); got %v; want %v", v, got, want)
		}
	}
	f("", 0)
	f("0", 0)
	f("2", 2*time.Second)
	f(" 120 ", 2*time.Minute)
	f("99999999999", MaxRetryAfter)
	f("-1", 0)
	f("soon", 0)
	f("Fri, 27 Nov 2026 12:00:30 GMT", 30*time.Second)
	f("Friday, 27-Nov-26 12:01:00 GMT", time.Minute) // RFC 850
	f("Fri Nov 27 12:00:05 2026", 5*time.Second)     // asctime
	f("Fri, 27 Nov 2026 11:00:00 GMT", 0)            // in the past
	f("Sat, 28 Nov 2026 12:00:00 GMT", MaxRetryAfter)
}

func TestStatusError(t *testing.T) {
	f := func(code int, retryAfter string, class string, retry bool, after time.Duration) {
		t.Helper()
		resp := &http.Response{StatusCode: code, Header: http.Header{}}
		if retryAfter != "" {
			resp.Header.Set("Retry-After", retryAfter)
		}
		err := StatusError(resp, time.Now(), "")
		var se *sinks.Error
		if !errors.As(err, &se) || se.Class != class || se.Retry != retry || se.After != after {
			t.Fatalf("unexpected classification of %d; got %#v; want class %s retry %v after %v", code, se, class, retry, after)
		}
	}
	f(301, "", "http_301", false, 0)
	f(302, "", "http_302", false, 0)
	f(304, "", "http_304", false, 0)
	f(400, "", "http_400", false, 0)
	f(401, "", "http_401", false, 0)
	f(404, "", "http_404", false, 0)
	f(408, "", "http_408", true, 0)
	f(410, "", "http_410", false, 0)
	f(413, "", "http_413", false, 0)
	f(429, "3", "http_429", true, 3*time.Second)
	f(500, "", "http_500", true, 0)
	f(502, "", "http_502", true, 0)
	f(503, "2", "http_503", true, 2*time.Second)
	f(504, "", "http_504", true, 0)
	f(404, "5", "http_404", false, 0) // Retry-After means nothing on a permanent failure
	f(700, "", "http_invalid_status", true, 0)
}

// TestDrainCapped: at most MaxResponseBytes of a body are read.
func TestDrainCapped(t *testing.T) {
	r := &countingReader{}
	Drain(r)
	if r.n != MaxResponseBytes || !r.closed {
		t.Fatalf("unexpected drain; got %d bytes read, closed=%v; want %d, true", r.n, r.closed, MaxResponseBytes)
	}
	r = &countingReader{}
	if b := ReadCapped(r, 100); len(b) != 100 || r.n != 100 || !r.closed {
		t.Fatalf("unexpected ReadCapped; got %d bytes (%d read)", len(b), r.n)
	}
}

// countingReader is an endless body.
type countingReader struct {
	n      int
	closed bool
}

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	r.n += len(p)
	return len(p), nil
}

func (r *countingReader) Close() error { r.closed = true; return nil }

func TestTransportErrorClasses(t *testing.T) {
	u := mustURL(t, "https://user:pw-canary@hooks.example.com/secret-path/x?token=t0k3n")
	f := func(ctx context.Context, err error, class string) {
		t.Helper()
		got := TransportError(ctx, "POST", u, &url.Error{Op: "Post", URL: u.String(), Err: err})
		if class == "" {
			if sinks.Class(got) != "error" || !errors.Is(got, context.Canceled) {
				t.Fatalf("unexpected error for a cancelled context; got %v", got)
			}
		} else {
			wantClass(t, got, class)
		}
		for _, secret := range []string{"pw-canary", "secret-path", "token", "t0k3n", "user"} {
			if strings.Contains(got.Error(), secret) {
				t.Fatalf("unexpected secret %q in %q", secret, got.Error())
			}
		}
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	f(cancelled, context.Canceled, "")
	f(t.Context(), context.DeadlineExceeded, "timeout")
	f(t.Context(), &net.DNSError{Err: "no such host", Name: "hooks.example.com"}, "dns")
	f(t.Context(), &net.OpError{Op: "dial", Err: &BlockedError{Reason: "loopback"}}, "ssrf_blocked")
	f(t.Context(), io.ErrUnexpectedEOF, "connection")
	f(t.Context(), errors.New(`net/http: HTTP/1.x transport connection broken: malformed HTTP status code "abc"`), "transport")
}

// TestUntrustedCertificate: a TLS server whose certificate is not trusted is a
// permanent tls_verify failure; trusting its CA makes it work.
func TestUntrustedCertificate(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	s.StartTLS()
	defer s.Close()
	g, err := New(Options{Policy: Policy{AllowedHosts: []string{"127.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := g.Client(ClientOptions{})
	defer c.CloseIdleConnections()
	_, err = get(t, c, s.URL)
	wantClass(t, TransportError(t.Context(), "POST", mustURL(t, s.URL), err), "tls_verify")

	trusted := g.Client(ClientOptions{TLSConfig: s.Client().Transport.(*http.Transport).TLSClientConfig})
	defer trusted.CloseIdleConnections()
	if resp, err := get(t, trusted, s.URL); err != nil || resp.StatusCode != 200 {
		t.Fatalf("unexpected result with the CA trusted: %v", err)
	}
}

// TestBlockedErrorMessages: each refusal reads as a sentence: no doubled
// "address", and the right article before each class.
func TestBlockedErrorMessages(t *testing.T) {
	res := newResolver(map[string][]string{"hooks.test": {"127.0.0.1"}})
	g, err := New(Options{Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	_, dialErr := g.DialContext(t.Context(), "tcp", "hooks.test:80")
	f := func(err error, want string) {
		t.Helper()
		if err == nil || err.Error() != want {
			t.Fatalf("unexpected error; got %v; want %q", err, want)
		}
	}
	f(CheckURL("http://2130706433/x", Policy{}), "egress blocked: 2130706433 is a legacy numeric form of 127.0.0.1: write addresses in canonical form")
	f(CheckURL("http://0x7f.1/x", Policy{}), "egress blocked: 0x7f.1 is a legacy numeric form of 127.0.0.1: write addresses in canonical form")
	f(CheckURL("http://0.0.0.0/x", Policy{}), "egress blocked: 0.0.0.0 is an unspecified address")
	f(CheckURL("http://169.254.169.254/latest", Policy{}), "egress blocked: 169.254.169.254 is a link-local address")
	f(CheckURL("http://[fd00::1]/", Policy{}), "egress blocked: fd00::1 is a unique local address")
	f(CheckURL("http://[::ffff:10.0.0.1]/", Policy{}), "egress blocked: ::ffff:10.0.0.1 is a private address (IPv4-mapped)")
	f(CheckURL("http://localhost/", Policy{}), "egress blocked: localhost is a loopback name")
	f(CheckURL("ftp://example.com/", Policy{}), "egress blocked: ftp://: only http and https URLs are allowed")
	var be *BlockedError
	if !errors.As(dialErr, &be) {
		t.Fatalf("unexpected dial error %v", dialErr)
	}
	f(be, "egress blocked: hooks.test resolves to 127.0.0.1, a loopback address")
	f(WithHint(CheckURL("http://10.1.2.3/", Policy{})), "egress blocked: 10.1.2.3 is a private address (list it in allowed_hosts, or set allow_private_networks: true)")
	f(WithHint(CheckURL("http://2130706433/", Policy{})), "egress blocked: 2130706433 is a legacy numeric form of 127.0.0.1: write addresses in canonical form")
	for _, r := range blockedRanges {
		if _, ok := classPhrases[r.class]; !ok {
			t.Errorf("class %s has no phrase for errors", r.class)
		}
	}
}
