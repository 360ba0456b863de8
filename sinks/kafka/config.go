package kafka

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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

// Config is the kafka action configuration. The zero value of every field but
// Brokers and Topic means its documented default.
type Config struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topic is an EscapeNone template rendered per event
	// ("cdc.{{ event.schema }}.{{ event.table }}").
	Topic string
	// Timeout bounds one produce call, retries inside the client included (default 10s).
	Timeout time.Duration
	// Acks is all (default) or leader.
	Acks string
	// Compression is none (default), snappy, lz4, zstd or gzip.
	Compression string
	// MaxMessageBytes is the largest record batch the producer builds and so the
	// largest event it sends (default 1000012). Keep it at or below the topics'
	// max.message.bytes.
	MaxMessageBytes int
	// TLS, when non-nil, dials the brokers with TLS and verifies them.
	TLS *sinks.TLSFiles
	// SASLMechanism is "" (no SASL), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with
	// Username and Password. PLAIN sends the password as is: use it with TLS only.
	SASLMechanism string
	Username      string
	Password      string
}

// Validate checks the configuration and fills defaults. Its messages name the key
// at fault first ("topic: ...") and never contain the password.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return sinks.KeyErrorf("brokers", errors.New("at least one broker is required"))
	}
	for _, b := range c.Brokers {
		if b == "" || strings.ContainsAny(b, " /") || !strings.Contains(b, ":") {
			return sinks.KeyErrorf("brokers", fmt.Errorf("%q is not host:port", b))
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
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	switch c.Acks {
	case "":
		c.Acks = AcksAll
	case AcksAll, AcksLeader:
	default:
		return sinks.KeyErrorf("acks", fmt.Errorf("must be all or leader, not %q", c.Acks))
	}
	if _, err := codec(c.Compression); err != nil {
		return err
	}
	if c.Compression == "" {
		c.Compression = "none"
	}
	switch {
	case c.MaxMessageBytes == 0:
		c.MaxMessageBytes = DefaultMaxMessageBytes
	case c.MaxMessageBytes < 512 || c.MaxMessageBytes > 1<<30:
		return sinks.KeyErrorf("max_message_bytes", errors.New("must be between 512B and 1GiB"))
	}
	switch c.SASLMechanism {
	case "":
		if c.Username != "" || c.Password != "" {
			return sinks.KeyErrorf("sasl_mechanism", errors.New("required with username and password"))
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.Username == "" || c.Password == "" {
			return sinks.KeyErrorf("sasl_mechanism", fmt.Errorf("%s needs a username and a password", c.SASLMechanism))
		}
	default:
		return sinks.KeyErrorf("sasl_mechanism", fmt.Errorf("must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q", c.SASLMechanism))
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
