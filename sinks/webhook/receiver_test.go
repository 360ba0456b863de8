package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// step is what the receiver does with one request.
type step struct {
	status int               // default 200
	header map[string]string // response headers
	body   int64             // bytes of garbage body; -1 writes until the client goes away
	stall  bool              // wait until the client gives up
	raw    string            // hijack the connection, write this and close it
	reset  bool              // hijack the connection and reset it (RST)
	hangup bool              // hijack the connection and close it without a word
}

// request is what the receiver saw.
type request struct {
	method string
	path   string
	header http.Header
	body   []byte
	at     time.Time
	status int // what the script answered (0 for stalls and broken connections)
}

// receiver is a real HTTP server on loopback answering each request by a script
// indexed by the request's Idempotency-Key and attempt number (from 0).
type receiver struct {
	*httptest.Server
	conns  *sinktest.CountingListener
	script func(key string, attempt int) step

	mu    sync.Mutex
	reqs  []request
	tries map[string]int
}

func newReceiver(t *testing.T, script func(key string, attempt int) step) *receiver {
	t.Helper()
	return newReceiverAt(t, "127.0.0.1:0", script)
}

// newReceiverAt is newReceiver listening on addr.
func newReceiverAt(t *testing.T, addr string, script func(key string, attempt int) step) *receiver {
	t.Helper()
	r := &receiver{script: script, tries: map[string]int{}}
	if r.script == nil {
		r.script = func(string, int) step { return step{} }
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r.Server = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	r.conns = &sinktest.CountingListener{Listener: l}
	r.Server.Listener = r.conns
	r.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	r.Server.Start()
	t.Cleanup(r.Server.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	key := req.Header.Get(HeaderIdempotencyKey)
	r.mu.Lock()
	attempt := r.tries[key]
	r.tries[key]++
	r.mu.Unlock()
	st := r.script(key, attempt)
	if st.status == 0 && !st.stall && st.raw == "" && !st.reset && !st.hangup {
		st.status = http.StatusOK
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, request{method: req.Method, path: req.URL.Path, header: req.Header.Clone(), body: body, at: time.Now(), status: st.status})
	r.mu.Unlock()
	switch {
	case st.stall:
		<-req.Context().Done()
		return
	case st.raw != "" || st.reset || st.hangup:
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		if st.reset {
			c.(*net.TCPConn).SetLinger(0)
		} else {
			c.Write([]byte(st.raw))
		}
		c.Close()
		return
	}
	for k, v := range st.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(st.status)
	chunk := bytes.Repeat([]byte("garbage!"), 4096)
	for written := int64(0); st.body < 0 || written < st.body; written += int64(len(chunk)) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// requests returns a copy of what the receiver saw.
func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

// verifyStandard verifies a request as a Standard Webhooks receiver does
// (spec/standard-webhooks.md, "Verifying signatures"): the signed content is
// "{webhook-id}.{webhook-timestamp}.{raw body}", HMAC-SHA256 under the base64
// secret (whsec_ prefix removed); the header lists space-delimited "v1,<base64>"
// signatures, any of which may match; comparison is constant-time; the timestamp
// must be within tolerance of now.
func verifyStandard(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook headers")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("invalid timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("timestamp outside tolerance")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%s.", id, ts)
	m.Write(body)
	want := []byte(base64.StdEncoding.EncodeToString(m.Sum(nil)))
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if ok && version == "v1" && hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

// verifyFraiseQL verifies X-FraiseQL-Signature-256: t=<unix>,v1=<hex HMAC-SHA256 of
// "<t>.<body>">[,v1=...] with the secret's bytes.
func verifyFraiseQL(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	v := h.Get("X-FraiseQL-Signature-256")
	var ts string
	var sigs []string
	for _, part := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = val
		case "v1":
			sigs = append(sigs, val)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("invalid timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("timestamp outside tolerance")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := m.Sum(nil)
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no matching signature")
}
