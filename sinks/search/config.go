package search

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

// Defaults and limits.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultBatchSize = 100
	MaxBatchSize     = sinks.MaxBatchSize
	// MaxIDBytes is the longest document id Elasticsearch accepts.
	MaxIDBytes = 512
	// MaxIndexBytes is the longest index name Elasticsearch accepts.
	MaxIndexBytes = 255
)

// Config is the action configuration (YAML keys of a `type: search` action).
// Zero values mean the documented defaults, which Defaults fills.
type Config struct {
	// URL is the cluster's base URL ("https://search.internal:9200"), url or
	// url_env; requests go to URL + "/_bulk".
	URL configs.Secret `yaml:"url,env"`
	// Index is a template naming the target index ("orders-{{ event.table }}").
	Index string `yaml:"index"`
	// IDTemplate renders the document id; empty means "<schema>.<table>:<key values>".
	IDTemplate string `yaml:"id_template"`
	// EventIDField, when set, adds the event id to each indexed document under this
	// field name.
	EventIDField string `yaml:"event_id_field"`
	// Username and Password (username_env, password_env) give HTTP basic
	// authentication; APIKey (api_key_env) gives "Authorization: ApiKey <key>"
	// (the encoded key as Elasticsearch returns it).
	Username configs.Secret `yaml:"username_env,env"`
	Password configs.Secret `yaml:"password_env,env"`
	APIKey   configs.Secret `yaml:"api_key_env,env"`
	// Timeout bounds each bulk request (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// Batch is batch_size, the most events per bulk request (default 100).
	sinks.Batch `yaml:",inline"`
	// Policy is allow_private_networks and allowed_hosts.
	egress.Policy `yaml:",inline"`
}

// Defaults fills the keys left out: timeout 10s, batch_size 100.
func (c *Config) Defaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
}

// Templates implements sinks.Templater: index, id_template.
func (c *Config) Templates() []sinks.TemplateSource {
	return sinks.SetTemplates(sinks.TemplateSource{Key: "index", Src: c.Index}, sinks.TemplateSource{Key: "id_template", Src: c.IDTemplate})
}

// Validate checks the configuration; it changes nothing, and zero values pass as
// their defaults. Its errors are *sinks.KeyError and never hold a credential. A
// URL whose variable was not set (configs.Options.DeferEnv) is not checked.
func (c *Config) Validate() error {
	if !c.URL.IsSet() {
		return sinks.KeyErrorf("url", errors.New("a URL is required (url or url_env)"))
	}
	if err := c.Policy.Validate(); err != nil {
		return sinks.KeyErrorf("allowed_hosts", err)
	}
	if c.URL.Known() {
		if err := egress.CheckURL(c.URL.Value(), c.Policy); err != nil {
			return sinks.KeyErrorf("url", egress.WithHint(err))
		}
		u, _ := url.Parse(c.URL.Value())
		switch {
		case u.User != nil:
			return sinks.KeyErrorf("url", errors.New("credentials in the URL are not allowed; use username_env and password_env, or api_key_env"))
		case u.RawQuery != "" || u.Fragment != "":
			return sinks.KeyErrorf("url", errors.New("the base URL must not have a query or a fragment"))
		}
	}
	if c.Index == "" {
		return sinks.KeyErrorf("index", errors.New("an index is required"))
	}
	t, err := eval.CompileTemplate(c.Index, eval.EscapeNone, eval.Options{})
	if err != nil {
		return sinks.KeyErrorf("index", err)
	}
	if t.Static() {
		if err := checkIndex(c.Index); err != nil {
			return sinks.KeyErrorf("index", err)
		}
	}
	if c.IDTemplate != "" {
		if _, err := eval.CompileTemplate(c.IDTemplate, eval.EscapeNone, eval.Options{}); err != nil {
			return sinks.KeyErrorf("id_template", err)
		}
	}
	if f := c.EventIDField; f != "" && (len(f) > 256 || strings.ContainsFunc(f, func(r rune) bool { return r < 0x20 || r == 0x7f })) {
		return sinks.KeyErrorf("event_id_field", errors.New("must be a field name of at most 256 bytes without control characters"))
	}
	switch {
	case c.APIKey.IsSet() && (c.Username.IsSet() || c.Password.IsSet()):
		return sinks.KeyErrorf("api_key_env", errors.New("use either api_key_env or username_env and password_env, not both"))
	case c.Username.IsSet() != c.Password.IsSet():
		return sinks.KeyErrorf("username_env", errors.New("username_env and password_env go together"))
	}
	if c.Timeout < 0 {
		return sinks.KeyErrorf("timeout", errors.New("must not be negative"))
	}
	return c.Batch.Check()
}

// checkIndex applies Elasticsearch's index name rules: lower case, not "." or "..",
// not starting with -, _ or +, none of \ / * ? " < > | , # : or space, at most 255
// bytes.
func checkIndex(name string) error {
	switch {
	case name == "":
		return errors.New("index name is empty")
	case len(name) > MaxIndexBytes:
		return fmt.Errorf("index name longer than %d bytes", MaxIndexBytes)
	case name == "." || name == "..":
		return errors.New(`index name cannot be "." or ".."`)
	case strings.ContainsAny(name[:1], "-_+"):
		return errors.New("index name cannot start with -, _ or +")
	case strings.ToLower(name) != name:
		return errors.New("index name must be lower case")
	case strings.ContainsAny(name, "\\/*?\"<>|,#: ") || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 }):
		return errors.New(`index name cannot contain \ / * ? " < > | , # : space or control characters`)
	}
	return nil
}
