package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/fraiseql/fraiseql-observers/admin"
	"github.com/fraiseql/fraiseql-observers/configs"
)

// exitUnavailable is the exit code of a command that needs the running service (its
// admin endpoint) when the service cannot be reached.
const exitUnavailable = 6

// globals are the flags every command shares.
type globals struct {
	config   string
	format   string
	adminURL string
	tokenEnv string
	stdout   io.Writer
	stderr   io.Writer
}

func (g *globals) register(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.StringVarP(&g.config, "config", "c", "config.yaml", "configuration file (YAML)")
	pf.StringVarP(&g.format, "format", "f", "text", "output format: text or json")
	pf.StringVar(&g.adminURL, "admin-url", "", "admin endpoint of the running service (default: http:// + admin.listen of the configuration)")
	pf.StringVar(&g.tokenEnv, "admin-token-env", "", "environment variable holding the admin bearer token (default: admin.token_env of the configuration)")
}

// json reports whether --format json was given; other values than text and json are
// a usage error.
func (g *globals) json() (bool, error) {
	switch g.format {
	case "text", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usageErr("--format must be text or json, not %q", g.format)
}

func usageErr(format string, args ...any) error {
	return &codeError{code: exitConfig, err: fmt.Errorf(format, args...)}
}

// loadConfig loads the configuration named by --config for an operator command,
// printing its warnings on stderr. Environment variables it refers to may be
// unset (configs.Options.DeferEnv): a command asks with Config.Need for the keys
// it uses, so it runs with only what it needs in the environment.
func (g *globals) loadConfig() (*configs.Config, error) {
	cfg, warnings, err := configs.LoadWith(g.config, configs.Options{DeferEnv: true})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &codeError{code: exitConfig, err: fmt.Errorf("%w (give the configuration with --config FILE)", err)}
		}
		return nil, err
	}
	for _, w := range warnings {
		fmt.Fprintln(g.stderr, "warning:", w.String())
	}
	return cfg, nil
}

// printJSON writes v as indented JSON.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// adminClient talks to the running service's admin endpoint.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// unreachableError reports that the admin endpoint did not answer.
type unreachableError struct {
	url string
	err error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("service not running (admin API unreachable at %s: %v)", e.url, e.err)
}

func (e *unreachableError) Unwrap() error { return e.err }

// apiError is an error answer of the admin endpoint.
type apiError struct {
	status int
	body   admin.ErrorBody
}

func (e *apiError) Error() string { return e.body.Error }

// newAdminClient resolves the admin URL from --admin-url or the configuration (cfg may
// be nil when --admin-url is given). It returns an error when neither says where the
// endpoint is.
func (g *globals) newAdminClient(cfg *configs.Config) (*adminClient, error) {
	c := &adminClient{http: &http.Client{Timeout: 30 * time.Second}}
	switch {
	case g.adminURL != "":
		c.base = strings.TrimRight(g.adminURL, "/")
	case cfg != nil && cfg.Admin.Listen != "" && cfg.Admin.TLSCertFile != "":
		c.base = "https://" + dialable(cfg.Admin.Listen)
	case cfg != nil && cfg.Admin.Listen != "":
		c.base = "http://" + dialable(cfg.Admin.Listen)
	case cfg != nil:
		return nil, &codeError{code: exitUnavailable, err: errors.New("the admin endpoint is disabled (admin.listen is empty in the configuration)")}
	default:
		return nil, usageErr("no admin endpoint: give --admin-url or a configuration with admin.listen")
	}
	if _, err := url.Parse(c.base); err != nil {
		return nil, usageErr("--admin-url: %v", err)
	}
	if cfg != nil {
		need := []string{"admin.listen", "admin.tls_ca_file"}
		if g.tokenEnv == "" {
			need = append(need, "admin.token_env")
		}
		if g.adminURL != "" {
			need = need[1:]
		}
		if err := cfg.Need(need...); err != nil {
			return nil, &codeError{code: exitConfig, err: err}
		}
	}
	if cfg != nil && cfg.Admin.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.Admin.TLSCAFile)
		if err != nil {
			return nil, &codeError{code: exitConfig, err: fmt.Errorf("admin.tls_ca_file: %w", err)}
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, &codeError{code: exitConfig, err: fmt.Errorf("admin.tls_ca_file: %s holds no PEM certificate", cfg.Admin.TLSCAFile)}
		}
		c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	}
	switch {
	case g.tokenEnv != "":
		c.token = os.Getenv(g.tokenEnv)
	case cfg != nil:
		c.token = cfg.Admin.Token.Value()
	}
	return c, nil
}

// untrustedCertificate reports whether err is a failed verification of the server's
// TLS certificate.
func untrustedCertificate(err error) bool {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// dialable turns a listen address into one a client can dial: a wildcard host becomes
// the loopback address.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// do sends a request and decodes a JSON answer into out (or returns the body as
// text when out is a *string).
func (c *adminClient) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if untrustedCertificate(err) {
			// The service answered: it runs, but this client cannot trust it.
			return &codeError{code: exitConfig, err: fmt.Errorf("the admin endpoint at %s answered, but its certificate cannot be verified: %w "+
				"(set admin.tls_ca_file to the CA that signed admin.tls_cert_file)", c.base, err)}
		}
		return &unreachableError{url: c.base, err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s: %w", c.base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{status: resp.StatusCode}
		if json.Unmarshal(data, &e.body) != nil || e.body.Error == "" {
			e.body.Error = fmt.Sprintf("%s %s: HTTP %s", method, c.base+path, resp.Status)
		}
		return e
	}
	if s, ok := out.(*string); ok {
		*s = string(data)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s: %w", c.base+path, err)
	}
	return nil
}

// serviceErr gives errors from the admin endpoint their exit codes: unreachable is
// exitUnavailable, a refused token or a bad request exitConfig.
func serviceErr(err error) error {
	var ue *unreachableError
	var ae *apiError
	switch {
	case errors.As(err, &ue):
		return &codeError{code: exitUnavailable, err: err}
	case errors.As(err, &ae) && ae.status == http.StatusUnauthorized:
		return &codeError{code: exitConfig, err: fmt.Errorf("%w (set the variable named by admin.token_env, or --admin-token-env)", err)}
	case errors.As(err, &ae) && (ae.status == http.StatusBadRequest || ae.body.Code == "replay_too_old" || ae.body.Code == "old_images_unavailable"):
		return &codeError{code: exitConfig, err: err}
	}
	return err
}

// humanBytes formats a byte count with a binary unit.
func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// humanSeconds formats a duration given in seconds.
func humanSeconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", s)
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// newCLILogger is the logger of commands other than start: warnings on stderr.
func newCLILogger(g *globals) zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: g.stderr, NoColor: true}).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// newSet returns a metric set for a command that exports nothing.
func newSet() *metrics.Set { return metrics.NewSet() }
