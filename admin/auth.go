package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authorize wraps h so that it needs the bearer token, when one is configured. The
// comparison is constant-time (over SHA-256 digests, so the token's length does not
// leak either).
func (s *Server) authorize(h http.Handler) http.Handler {
	if s.opts.Token == "" {
		return h
	}
	want := sha256.Sum256([]byte(s.opts.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fraiseql-observers"`)
			writeError(w, &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
				Msg: "a valid bearer token is required (Authorization: Bearer <token>; see admin.token_env)"})
			return
		}
		h.ServeHTTP(w, r)
	})
}
