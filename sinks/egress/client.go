package egress

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"time"
)

// MaxRedirects is how many redirects a client follows when following is enabled.
const MaxRedirects = 3

// ClientOptions configures Client.
type ClientOptions struct {
	// FollowRedirects follows up to MaxRedirects redirects that keep the request's
	// method (307, 308), each target checked by the guard. Off (the default), a 3xx
	// response is returned to the caller, which treats it as a failure.
	FollowRedirects bool
	// TLSConfig, if set, is used for https targets (for example to trust a private CA).
	TLSConfig *tls.Config
}

// RedirectError says why a redirect was not followed. It is permanent: the same
// request would be redirected the same way.
type RedirectError struct {
	Class string // "too_many_redirects" or "redirect_method"
	Msg   string
}

func (e *RedirectError) Error() string { return e.Msg }

// Client returns an HTTP client whose connections go through the guard. It ignores
// proxy environment variables (a proxy would be the only address checked) and has
// no overall timeout: callers bound every request with a context deadline. Call
// CloseIdleConnections when done with it.
func (g *Guard) Client(o ClientOptions) *http.Client {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            g.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		TLSClientConfig:        o.TLSConfig,
	}
	c := &http.Client{Transport: tr}
	if !o.FollowRedirects {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return c
	}
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > MaxRedirects {
			return &RedirectError{Class: "too_many_redirects", Msg: fmt.Sprintf("stopped after %d redirects", MaxRedirects)}
		}
		if req.Method != via[0].Method {
			// 301/302/303 turn the request into a body-less GET: a 2xx answer to it
			// would count as a delivery of an event that was never sent.
			return &RedirectError{Class: "redirect_method", Msg: fmt.Sprintf("redirect would change the method from %s to %s (only 307 and 308 redirects are followed)", via[0].Method, req.Method)}
		}
		if err := g.CheckURL(req.URL); err != nil {
			return err
		}
		return nil
	}
	return c
}
