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
		got, ok := bearerToken(r.Header.Get("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fraiseql-observers"`)
			writeError(w, &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
				Msg: "a valid bearer token is required (Authorization: Bearer <token>; see admin.token_env)"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearerToken returns the credentials of an Authorization header of the Bearer
// scheme. The scheme name is case-insensitive and may be followed by several
// spaces (RFC 9110 section 11.1, RFC 6750 section 2.1).
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimLeft(h, " \t"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.Trim(token, " \t")
	return token, token != ""
}
