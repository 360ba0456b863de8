package webhook

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/sinktest"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

func TestValidate(t *testing.T) {
	good := func() Config { return Config{URL: configs.NewSecret("https://hooks.example.com/orders")} }
	// The first argument names the row; a failure reports the line of its call.
	f := func(_ string, mod func(c *Config), key, msg string) {
		t.Helper()
		c := good()
		mod(&c)
		sinktest.WantKeyError(t, c.Validate(), key, msg)
	}
	f("defaults", func(c *Config) {}, "", "")
	f("missing url", func(c *Config) { c.URL = configs.NewSecret("") }, "url", "required")
	f("file scheme", func(c *Config) { c.URL = configs.NewSecret("file:///etc/passwd") }, "url", "only http and https")
	f("unix scheme", func(c *Config) { c.URL = configs.NewSecret("unix:///run/x.sock") }, "url", "only http and https")
	f("no host", func(c *Config) { c.URL = configs.NewSecret("http:///x") }, "url", "no host")
	f("literal loopback", func(c *Config) { c.URL = configs.NewSecret("http://127.0.0.1:8080/") }, "url", "loopback")
	f("literal metadata", func(c *Config) { c.URL = configs.NewSecret("http://169.254.169.254/") }, "url", "169.254.169.254 is a link-local address")
	f("literal private", func(c *Config) { c.URL = configs.NewSecret("http://10.1.2.3/") }, "url", "allowed_hosts")
	f("localhost", func(c *Config) { c.URL = configs.NewSecret("http://localhost:8080/") }, "url", "loopback")
	f("numeric host", func(c *Config) { c.URL = configs.NewSecret("http://2130706433/") }, "url", "legacy numeric")
	f("templated url", func(c *Config) { c.URL = configs.NewSecret("https://hooks.example.com/orders/{{ new.id }}") }, "url", `holds "{": url is not a template`)
	f("closing brace", func(c *Config) { c.URL = configs.NewSecret("https://hooks.example.com/x}") }, "url", `holds "}"`)
	f("escaped brace", func(c *Config) { c.URL = configs.NewSecret("https://hooks.example.com/%7Bx%7D") }, "", "")
	f("allow-listed private", func(c *Config) {
		c.URL = configs.NewSecret("http://10.1.2.3/")
		c.AllowedHosts = []string{"10.1.0.0/16"}
	}, "", "")
	f("allow private networks", func(c *Config) { c.URL = configs.NewSecret("http://127.0.0.1/"); c.AllowPrivateNetworks = true }, "", "")
	f("bad allow-list entry", func(c *Config) { c.AllowedHosts = []string{"10.0.0.0/99"} }, "allowed_hosts", "invalid CIDR")
	f("public name", func(c *Config) { c.URL = configs.NewSecret("http://internal-looking.example:9000/x") }, "", "")
	f("lower-case method", func(c *Config) { c.Method = "put" }, "", "")
	f("GET", func(c *Config) { c.Method = "GET" }, "method", "not a method that sends a body")
	f("HEAD", func(c *Config) { c.Method = "HEAD" }, "method", "not a method that sends a body")
	f("bad verb", func(c *Config) { c.Method = "PO ST" }, "method", "not an HTTP method")
	f("verb with CRLF", func(c *Config) { c.Method = "POST\r\nX: y" }, "method", "not an HTTP method")
	f("negative timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout", "negative")
	f("unknown format", func(c *Config) { c.SigningSecret = configs.NewSecret("s"); c.SignatureFormat = "hmac" }, "signature_format", "fraiseql or standard")
	f("format without secret", func(c *Config) { c.SignatureFormat = FormatStandard }, "signature_format", "no signing secret")
	f("short standard secret", func(c *Config) {
		c.SignatureFormat = FormatStandard
		c.SigningSecret = configs.NewSecret("whsec_" + "c2hvcnQ=") // "short"
	}, "signing_secret", "at least 24")
	f("23-byte standard secret", func(c *Config) {
		c.SignatureFormat = FormatStandard
		c.SigningSecret = configs.NewSecret("whsec_MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM=") // 23 bytes
	}, "signing_secret", "got 23")
	f("non-base64 standard secret", func(c *Config) {
		c.SignatureFormat = FormatStandard
		c.SigningSecret = configs.NewSecret("whsec_not base64!")
	}, "signing_secret", "base64")
	f("standard secret without prefix", func(c *Config) {
		c.SignatureFormat = FormatStandard
		c.SigningSecret = configs.NewSecret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	}, "", "")
	f("short rotated standard secret", func(c *Config) {
		c.SignatureFormat = FormatStandard
		c.SigningSecrets = []configs.Secret{configs.NewSecret(secretA), configs.NewSecret("whsec_c2hvcnQ=")}
	}, "signing_secret", "at least 24")
	f("body template does not compile", func(c *Config) { c.BodyTemplate = `{"a": {{ new.x + }}}` }, "body_template", "")
	f("body template unclosed", func(c *Config) { c.BodyTemplate = `{"a": {{ new.x }` }, "body_template", "unclosed")
	f("batch size", func(c *Config) { c.BatchSize = -1 }, "batch_size", "between")
	f("batch size too large", func(c *Config) { c.BatchSize = MaxBatchSize + 1 }, "batch_size", "between")

	// Header injection and invalid names are refused at load.
	for _, tc := range []struct {
		name, value, msg string
	}{
		{"X-Ok", "value\r\nX-Injected: 1", "control character 0x0d"},
		{"X-Ok", "value\nX-Injected: 1", "control character 0x0a"},
		{"X-Ok", "value\x00", "control character 0x00"},
		{"X-Ok", "bell\x07", "control character 0x07"},
		{"X-Ok", "del\x7f", "control character 0x7f"},
		{"X-Bad\r\nX-Injected", "v", "not a valid token"},
		{"X-Bad\n", "v", "not a valid token"},
		{"X-Bad\x00", "v", "not a valid token"},
		{"X-Bad:", "v", "not a valid token"},
		{"X Bad", "v", "not a valid token"},
		{"", "v", "not a valid token"},
		{"X-Ünicode", "v", "not a valid token"},
		{"Host", "evil.example", "set by the webhook action"},
		{"content-length", "1", "set by the webhook action"},
		{"Idempotency-Key", "x", "set by the webhook action"},
		{"webhook-signature", "v1,x", "set by the webhook action"},
		{"X-FraiseQL-Signature-256", "x", "set by the webhook action"},
	} {
		f(fmt.Sprintf("header %q: %q", tc.name, tc.value), func(c *Config) { c.Headers = map[string]string{tc.name: tc.value} }, "headers", tc.msg)
	}
	f("duplicate header", func(c *Config) { c.Headers = map[string]string{"X-A": "1", "x-a": "2"} }, "headers", "same header")
	f("good headers", func(c *Config) {
		c.Headers = map[string]string{"Authorization": "Bearer t", "X-Tab": "a\tb", "Content-Type": "application/vnd.x+json"}
	}, "", "")

	// Secrets and header values never appear in errors.
	c := Config{URL: configs.NewSecret("https://h.example/"), Headers: map[string]string{"X-Token": "s3cr3t\r\n"}}
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("unexpected error; got %v; want one without the header value", err)
	}
	c = Config{URL: configs.NewSecret("https://h.example/"), SignatureFormat: FormatStandard, SigningSecret: configs.NewSecret("whsec_c2hvcnQ=")}
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "c2hvcnQ") {
		t.Fatalf("unexpected error; got %v; want one without the secret", err)
	}
	if got := fmt.Sprintf("%v %+v %#v", c.SigningSecret, c, c); strings.Contains(got, "c2hvcnQ") {
		t.Fatalf("unexpected secret in formatted config: %s", got)
	}
}

func TestValidateDefaults(t *testing.T) {
	c := Config{URL: configs.NewSecret("https://hooks.example.com/"), SigningSecret: configs.NewSecret("x"), Policy: egress.Policy{}}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Method != "POST" || c.Timeout != 30*time.Second || c.SignatureFormat != FormatFraiseQL || c.BatchSize != 1 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	// Validate only checks: it accepts a configuration before and after Defaults,
	// and changes nothing.
	for _, c := range []Config{{URL: configs.NewSecret("https://h.example/"), Method: "put"}, {URL: configs.NewSecret("https://h.example/"), SigningSecret: configs.NewSecret(secretA), SignatureFormat: FormatStandard}} {
		before := fmt.Sprintf("%#v", c)
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if after := fmt.Sprintf("%#v", c); after != before {
			t.Fatalf("unexpected change by Validate; got\n%s\nwant\n%s", after, before)
		}
		c.Defaults()
		if err := c.Validate(); err != nil {
			t.Fatalf("unexpected error validating a configuration with its defaults: %v", err)
		}
	}
}

func TestRedactedHeaders(t *testing.T) {
	c := Config{Headers: map[string]string{
		"Authorization": "Bearer abc", "X-Api-Key": "k", "X-Auth-Token": "t", "Cookie": "c",
		"X-Client-Secret": "s", "X-Source": "fraiseql-observers", "Content-Type": "application/json",
	}}
	got := c.RedactedHeaders()
	for n, v := range got {
		secret := n != "X-Source" && n != "Content-Type"
		if secret != (v == "[redacted]") {
			t.Fatalf("unexpected redaction of %s; got %q", n, v)
		}
	}
}
