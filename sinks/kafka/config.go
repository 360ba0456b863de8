package kafka

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// Acknowledgement levels (Config.Acks).
const (
	AcksAll    = "all"    // every in-sync replica has the record (default; idempotent producer)
	AcksLeader = "leader" // only the partition leader has it: lost if the leader dies before replicating
)

// SASL mechanisms (Config.SASLMechanism).
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Defaults.
const (
	DefaultTimeout         = 10 * time.Second
	DefaultMaxMessageBytes = 1000012 // franz-go's and the Java producer's default, under the broker's 1048588
)

// Config is the kafka action configuration (YAML keys of a `type: kafka` action).
// Zero values mean the documented defaults, which Defaults fills.
type Config struct {
	// Brokers are the seed brokers, host:port; or BrokersEnv (brokers_env) names a
	// variable holding them separated by commas.
	Brokers    []string       `yaml:"brokers"`
	BrokersEnv configs.Secret `yaml:"brokers_env,env"`
	// Topic is an EscapeNone template rendered per event
	// ("cdc.{{ event.schema }}.{{ event.table }}").
	Topic string `yaml:"topic"`
	// Timeout bounds one produce call, retries inside the client included (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// Acks is all (default) or leader.
	Acks string `yaml:"acks"`
	// Compression is none (default), snappy, lz4, zstd or gzip.
	Compression string `yaml:"compression"`
	// MaxMessageBytes is the largest record batch the producer builds and so the
	// largest event it sends (default 1000012). Keep it at or below the topics'
	// max.message.bytes.
	MaxMessageBytes configs.Size `yaml:"max_message_bytes"`
	// TLS, when non-nil, dials the brokers with TLS and verifies them.
	TLS *sinks.TLSFiles `yaml:"tls"`
	// SASLMechanism is "" (no SASL), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (in any
	// case), with Username (username or username_env) and Password (password_env).
	// PLAIN sends the password as is: use it with TLS only.
	SASLMechanism string         `yaml:"sasl_mechanism"`
	Username      configs.Secret `yaml:"username,env"`
	Password      configs.Secret `yaml:"password_env,env"`
	// Batch is batch_size: the most events produced together in one delivery
	// (default pipeline.batch_size).
	sinks.Batch `yaml:",inline"`
}

// Defaults fills the keys left out: timeout 10s, acks all, compression none,
// max_message_bytes 1000012. It also writes sasl_mechanism in upper case.
func (c *Config) Defaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Acks == "" {
		c.Acks = AcksAll
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	c.SASLMechanism = strings.ToUpper(c.SASLMechanism)
}

// brokers returns the seed brokers: brokers, or the list in brokers_env.
func (c *Config) brokers() []string {
	if !c.BrokersEnv.IsSet() {
		return c.Brokers
	}
	var out []string
	for _, s := range strings.Split(c.BrokersEnv.Value(), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Templates implements sinks.Templater: topic.
func (c *Config) Templates() []sinks.TemplateSource {
	return sinks.SetTemplates(sinks.TemplateSource{Key: "topic", Src: c.Topic})
}

// Validate checks the configuration; it changes nothing, and zero values pass as
// their defaults. Its errors are *sinks.KeyError naming the key at fault and never
// contain the password. It reads the TLS files.
func (c *Config) Validate() error {
	if c.BrokersEnv.IsSet() && len(c.Brokers) > 0 {
		return sinks.KeyErrorf("brokers_env", errors.New("brokers and brokers_env are mutually exclusive"))
	}
	if c.MaxMessageBytes > 1<<30 {
		return sinks.KeyErrorf("max_message_bytes", errors.New("must be at most 1GiB"))
	}
	if c.BrokersEnv.Known() {
		brokers := c.brokers()
		if len(brokers) == 0 {
			return sinks.KeyErrorf("brokers", errors.New("at least one broker is required"))
		}
		for _, b := range brokers {
			if b == "" || strings.ContainsAny(b, " /") || !strings.Contains(b, ":") {
				return sinks.KeyErrorf("brokers", fmt.Errorf("%q is not host:port", b))
			}
		}
	}
	if c.Topic == "" {
		return sinks.KeyErrorf("topic", errors.New("required"))
	}
	t, err := eval.CompileTemplate(c.Topic, eval.EscapeNone, eval.Options{})
	if err != nil {
		return sinks.KeyErrorf("topic", err)
	}
	if t.Static() {
		if err := checkTopic(c.Topic); err != nil {
			return sinks.KeyErrorf("topic", err)
		}
	}
	if c.Timeout < 0 {
		return sinks.KeyErrorf("timeout", errors.New("must not be negative"))
	}
	switch c.Acks {
	case "", AcksAll, AcksLeader:
	default:
		return sinks.KeyErrorf("acks", fmt.Errorf("must be all or leader, not %q", c.Acks))
	}
	if _, err := codec(c.Compression); err != nil {
		return err
	}
	if c.MaxMessageBytes != 0 && c.MaxMessageBytes < 512 {
		return sinks.KeyErrorf("max_message_bytes", errors.New("must be between 512B and 1GiB"))
	}
	switch sasl := strings.ToUpper(c.SASLMechanism); sasl {
	case "":
		if c.Username.IsSet() || c.Password.IsSet() {
			return sinks.KeyErrorf("sasl_mechanism", errors.New("required with username and password"))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if !c.Username.IsSet() || !c.Password.IsSet() {
			return sinks.KeyErrorf("sasl_mechanism", fmt.Errorf("%s needs a username and a password", sasl))
		}
	default:
		return sinks.KeyErrorf("sasl_mechanism", fmt.Errorf("must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q", c.SASLMechanism))
	}
	if err := c.Batch.Check(); err != nil {
		return err
	}
	if c.TLS != nil {
		if _, err := c.TLS.Config(); err != nil {
			return sinks.KeyErrorf("tls", err)
		}
	}
	return nil
}

// codec returns the franz-go codec for a compression name.
func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "none":
		return kgo.NoCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	}
	return kgo.NoCompression(), sinks.KeyErrorf("compression", fmt.Errorf("must be none, snappy, lz4, zstd or gzip, not %q", name))
}

// checkTopic applies Kafka's rule for topic names: 1 to 249 characters of
// [a-zA-Z0-9._-], and not "." or "..".
func checkTopic(s string) error {
	if s == "" {
		return errors.New("empty topic name")
	}
	if len(s) > 249 {
		return errors.New("topic name longer than 249 characters")
	}
	if s == "." || s == ".." {
		return errors.New(`topic name cannot be "." or ".."`)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name has a character outside [a-zA-Z0-9._-] at byte %d", i)
		}
	}
	return nil
}
