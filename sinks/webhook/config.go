package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

// Signature formats.
const (
	// FormatFraiseQL is the original system's header
	// X-FraiseQL-Signature-256: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">.
	FormatFraiseQL = "fraiseql"
	// FormatStandard is Standard Webhooks: webhook-id, webhook-timestamp and
	// webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">.
	FormatStandard = "standard"
)

// Defaults and limits.
const (
	DefaultTimeout = 30 * time.Second
	MaxBatchSize   = sinks.MaxBatchSize
	// MinStandardSecretBytes is the shortest Standard Webhooks secret accepted (after
	// base64 decoding), as the specification requires.
	MinStandardSecretBytes = 24
)

// Config is the action configuration (YAML keys of a `type: webhook` action).
// Zero values mean the documented defaults, which Defaults fills.
type Config struct {
	// URL is the target, http or https: url, or url_env naming the variable that
	// holds it.
	URL configs.Secret `yaml:"url,env"`
	// Method is POST (default), PUT, PATCH or DELETE.
	Method string `yaml:"method"`
	// Headers are static headers added to every request.
	Headers map[string]string `yaml:"headers"`
	// BodyTemplate renders the body (JSON-escaped substitution); empty sends the
	// event JSON of docs/events.md.
	BodyTemplate string `yaml:"body_template"`
	// Timeout bounds each attempt: connecting, sending, and reading the response
	// (default 30s).
	Timeout time.Duration `yaml:"timeout"`
	// SigningSecret signs every request (signing_secret or signing_secret_env);
	// SigningSecrets (signing_secrets_env, a list of variables) lists several
	// during a rotation, each producing one signature.
	SigningSecret  configs.Secret   `yaml:"signing_secret,env"`
	SigningSecrets []configs.Secret `yaml:"signing_secrets_env,env"`
	// SignatureFormat is fraiseql (default when signed) or standard.
	SignatureFormat string `yaml:"signature_format"`
	// Batch is batch_size: more than 1 sends up to that many events as one JSON
	// array per request (default 1).
	sinks.Batch `yaml:",inline"`
	// FollowRedirects follows up to 3 method-preserving redirects, each target
	// checked by the egress guard.
	FollowRedirects bool `yaml:"follow_redirects"`
	// Policy is allow_private_networks and allowed_hosts.
	egress.Policy `yaml:",inline"`
}

// Defaults fills the keys left out: method POST, timeout 30s, signature_format
// fraiseql when a secret is set, batch_size 1. It also writes the method in
// upper case.
func (c *Config) Defaults() {
	c.Method = strings.ToUpper(c.Method)
	if c.Method == "" {
		c.Method = http.MethodPost
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.SignatureFormat == "" && len(c.secrets()) > 0 {
		c.SignatureFormat = FormatFraiseQL
	}
	if c.BatchSize == 0 {
		c.BatchSize = 1
	}
}

// reservedHeaders are set by the sink; a configured header may not replace them.
var reservedHeaders = map[string]bool{
	"Content-Length": true, "Transfer-Encoding": true, "Host": true, "Connection": true,
	"Te": true, "Trailer": true, "Upgrade": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Idempotency-Key": true, "Webhook-Id": true, "Webhook-Timestamp": true, "Webhook-Signature": true,
	"X-Fraiseql-Signature-256": true,
}

var methods = map[string]bool{http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true}

// Templates implements sinks.Templater: body_template.
func (c *Config) Templates() []sinks.TemplateSource {
	return sinks.SetTemplates(sinks.TemplateSource{Key: "body_template", Src: c.BodyTemplate})
}

// Validate checks the configuration; it changes nothing, and zero values pass as
// their defaults. Its errors are *sinks.KeyError naming the key at fault; they
// never hold a secret or a header value. A secret whose variable was not set
// (configs.Options.DeferEnv) counts as given; its value is not checked.
func (c *Config) Validate() error {
	if c.SigningSecret.IsSet() && c.SigningSecrets != nil {
		return sinks.KeyErrorf("signing_secrets_env", errors.New("signing_secret and signing_secrets_env are mutually exclusive; give only one"))
	}
	if c.SigningSecrets != nil && len(c.SigningSecrets) == 0 {
		return sinks.KeyErrorf("signing_secrets_env", errors.New("lists no environment variable"))
	}
	if !c.URL.IsSet() {
		return sinks.KeyErrorf("url", errors.New("a URL is required (url or url_env)"))
	}
	if u := c.URL.Value(); strings.ContainsAny(u, "{}") {
		// Templates are not rendered in url: "{{ new.id }}" would be sent as
		// %7B%7B%20new.id%20%7D%7D to every event's request.
		brace := u[strings.IndexAny(u, "{}"):][:1]
		return sinks.KeyErrorf("url", fmt.Errorf("holds %q: url is not a template, it is sent as written for every event; "+
			"put per-event values in body_template (or write a literal brace as %%7B or %%7D)", brace))
	}
	if err := c.Policy.Validate(); err != nil {
		return sinks.KeyErrorf("allowed_hosts", err)
	}
	if c.URL.Known() {
		if err := egress.CheckURL(c.URL.Value(), c.Policy); err != nil {
			return sinks.KeyErrorf("url", egress.WithHint(err))
		}
	}
	m := strings.ToUpper(c.Method)
	switch {
	case m == "" || methods[m]:
	case validToken(m):
		return sinks.KeyErrorf("method", fmt.Errorf("%q is not a method that sends a body; use POST, PUT, PATCH or DELETE", c.Method))
	default:
		return sinks.KeyErrorf("method", fmt.Errorf("%q is not an HTTP method", c.Method))
	}
	if err := checkHeaders(c.Headers); err != nil {
		return sinks.KeyErrorf("headers", err)
	}
	if c.BodyTemplate != "" {
		if _, err := eval.CompileTemplate(c.BodyTemplate, eval.EscapeJSON, eval.Options{}); err != nil {
			return sinks.KeyErrorf("body_template", err)
		}
	}
	if c.Timeout < 0 {
		return sinks.KeyErrorf("timeout", errors.New("must not be negative"))
	}
	secrets := c.secrets()
	switch c.SignatureFormat {
	case "":
	case FormatFraiseQL, FormatStandard:
		if len(secrets) == 0 {
			return sinks.KeyErrorf("signature_format", errors.New("is set but no signing secret is configured"))
		}
	default:
		return sinks.KeyErrorf("signature_format", fmt.Errorf("must be fraiseql or standard, not %q", c.SignatureFormat))
	}
	if _, err := signingKeys(c.SignatureFormat, secrets); err != nil {
		return sinks.KeyErrorf("signing_secret", err)
	}
	return c.Batch.Check()
}

// secrets returns the signing secrets that are set (with DeferEnv, perhaps with
// an unknown value).
func (c *Config) secrets() []configs.Secret {
	var out []configs.Secret
	if c.SigningSecret.IsSet() {
		out = append(out, c.SigningSecret)
	}
	return append(out, c.SigningSecrets...)
}

// signingKeys returns the HMAC keys of secrets: the bytes as written for the
// fraiseql format; for the standard format the base64 secret (with or without the
// whsec_ prefix) decoded, at least MinStandardSecretBytes long. A secret whose
// value is unknown (configs.Options.DeferEnv) is skipped.
func signingKeys(format string, secrets []configs.Secret) ([][]byte, error) {
	keys := make([][]byte, 0, len(secrets))
	for i, s := range secrets {
		if !s.Known() {
			continue
		}
		if s.Value() == "" {
			return nil, fmt.Errorf("signing secret %d is empty", i+1)
		}
		if format != FormatStandard {
			keys = append(keys, []byte(s.Value()))
			continue
		}
		b64 := strings.TrimPrefix(s.Value(), "whsec_")
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			key, err = base64.RawStdEncoding.DecodeString(b64)
		}
		if err != nil {
			return nil, errors.New("a standard-format signing secret must be base64, optionally prefixed with whsec_")
		}
		if len(key) < MinStandardSecretBytes {
			return nil, fmt.Errorf("a standard-format signing secret must hold at least %d random bytes, got %d", MinStandardSecretBytes, len(key))
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// checkHeaders rejects header names that are not RFC 9110 tokens (so no ':', space
// or control character), values with CR, LF, NUL or another control character
// (header injection), names the sink sets itself, and names given twice.
func checkHeaders(h map[string]string) error {
	names := make([]string, 0, len(h))
	for n := range h {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := map[string]string{}
	for _, n := range names {
		if !validToken(n) {
			return fmt.Errorf("header name %q is not a valid token (letters, digits and !#$%%&'*+-.^_`|~)", n)
		}
		if bad := badValueByte(h[n]); bad >= 0 {
			return fmt.Errorf("header %q: value holds control character 0x%02x (CR, LF and NUL allow header injection)", n, bad)
		}
		cn := http.CanonicalHeaderKey(n)
		if reservedHeaders[cn] {
			return fmt.Errorf("header %q is set by the webhook action and cannot be configured", n)
		}
		if prev, ok := seen[cn]; ok {
			return fmt.Errorf("headers %q and %q are the same header", prev, n)
		}
		seen[cn] = n
	}
	return nil
}

// validToken reports whether s is an RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// badValueByte returns the first control character of v other than horizontal tab,
// or -1.
func badValueByte(v string) int {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return int(c)
		}
	}
	return -1
}

// secretHeaderWords mark header names whose values are not logged.
var secretHeaderWords = []string{"auth", "token", "secret", "key", "signature", "cookie", "password", "credential", "session"}

// RedactedHeaders returns the configured headers for logs: values of names that
// look secret (Authorization, X-Api-Key, ...) are "[redacted]".
func (c *Config) RedactedHeaders() map[string]string {
	out := make(map[string]string, len(c.Headers))
	for n, v := range c.Headers {
		out[n] = v
		ln := strings.ToLower(n)
		for _, w := range secretHeaderWords {
			if strings.Contains(ln, w) {
				out[n] = "[redacted]"
				break
			}
		}
	}
	return out
}
