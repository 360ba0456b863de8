// Package slack is the slack action: each event posts one message, {"text": ...,
// "channel": ...}, to a Slack incoming webhook. The message is rendered from a
// plain-text template; the payload is encoded with encoding/json. Connections go
// through the egress guard; outcomes are classified as for webhooks. See
// docs/actions/slack.md.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/decoder"
	"github.com/fraiseql/fraiseql-observers/eval"
	"github.com/fraiseql/fraiseql-observers/sinks"
	"github.com/fraiseql/fraiseql-observers/sinks/egress"
)

// DefaultTimeout bounds each attempt unless timeout is set.
const DefaultTimeout = 10 * time.Second

// MaxChannelLen is the longest accepted channel name.
const MaxChannelLen = 256

// Config is the action configuration (YAML keys of a `type: slack` action).
// Zero values mean the documented defaults, which Defaults fills.
type Config struct {
	// WebhookURL is the incoming-webhook URL (webhook_url, or webhook_url_env
	// naming the variable that holds it). It is a credential: it is never logged
	// or put in an error beyond its scheme and host.
	WebhookURL configs.Secret `yaml:"webhook_url,env"`
	// Channel overrides the webhook's channel when set ("#ops").
	Channel string `yaml:"channel"`
	// MessageTemplate renders the text (plain substitution); empty means
	// "<OP> on <schema>.<table> (event <id>)".
	MessageTemplate string `yaml:"message_template"`
	// Timeout bounds each attempt (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// Policy is allow_private_networks and allowed_hosts.
	egress.Policy `yaml:",inline"`
}

// Defaults fills the keys left out: timeout 10s.
func (c *Config) Defaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
}

// Templates implements sinks.Templater: message_template.
func (c *Config) Templates() []sinks.TemplateSource {
	return sinks.SetTemplates(sinks.TemplateSource{Key: "message_template", Src: c.MessageTemplate})
}

// Validate checks the configuration; it changes nothing, and zero values pass as
// their defaults. Its errors are *sinks.KeyError and never hold the URL. A URL
// whose variable was not set (configs.Options.DeferEnv) is not checked.
func (c *Config) Validate() error {
	if !c.WebhookURL.IsSet() {
		return sinks.KeyErrorf("webhook_url", errors.New("a webhook URL is required (webhook_url or webhook_url_env)"))
	}
	if err := c.Policy.Validate(); err != nil {
		return sinks.KeyErrorf("allowed_hosts", err)
	}
	if c.WebhookURL.Known() {
		if err := egress.CheckURL(c.WebhookURL.Value(), c.Policy); err != nil {
			return sinks.KeyErrorf("webhook_url", egress.WithHint(err))
		}
	}
	if len(c.Channel) > MaxChannelLen || !utf8.ValidString(c.Channel) {
		return sinks.KeyErrorf("channel", fmt.Errorf("must be valid UTF-8 of at most %d bytes", MaxChannelLen))
	}
	if c.MessageTemplate != "" {
		if _, err := eval.CompileTemplate(c.MessageTemplate, eval.EscapeNone, eval.Options{}); err != nil {
			return sinks.KeyErrorf("message_template", err)
		}
	}
	if c.Timeout < 0 {
		return sinks.KeyErrorf("timeout", errors.New("must not be negative"))
	}
	return nil
}

// Sink posts events to Slack. It is safe for concurrent use; Deliver blocks until
// Slack answered, the timeout passed or ctx is done.
type Sink struct {
	cfg    Config
	url    *url.URL
	text   *eval.Template
	client *http.Client
	meta   eval.Meta
}

// New fills cfg's defaults, validates it and returns a sink. It connects to
// nothing and starts no goroutine. deps.Logger receives one debug line (host
// only); deps.Metrics receives observer_egress_blocked_total{action_type="slack"};
// deps.TLS, if set, is used for https targets.
func New(_ context.Context, cfg Config, deps sinks.Deps) (*Sink, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.WebhookURL.Known() {
		return nil, sinks.KeyErrorf("webhook_url", errors.New("the URL is unknown: its environment variable is not set"))
	}
	u, err := url.Parse(cfg.WebhookURL.Value())
	if err != nil {
		return nil, sinks.KeyErrorf("webhook_url", errors.New("invalid URL"))
	}
	guard, err := egress.New(egress.Options{Policy: cfg.Policy, ActionType: "slack", Metrics: deps.Metrics, Resolver: deps.Resolver})
	if err != nil {
		return nil, sinks.KeyErrorf("allowed_hosts", err)
	}
	s := &Sink{cfg: cfg, url: u, client: guard.Client(egress.ClientOptions{TLSConfig: deps.TLS}), meta: deps.Templates.Meta}
	if cfg.MessageTemplate != "" {
		if s.text, err = deps.Templates.Compile(cfg.MessageTemplate, eval.EscapeNone); err != nil {
			return nil, sinks.KeyErrorf("message_template", err)
		}
	}
	deps.Logger.Debug().Str("target", egress.RedactURL(u)).Bool("channel", cfg.Channel != "").Msg("slack action ready")
	return s, nil
}

// message is the incoming-webhook payload.
type message struct {
	Text    string `json:"text"`
	Channel string `json:"channel,omitempty"`
}

// Summary is the default message of ev: "UPDATE on public.orders (event 0/16B3748:3)",
// or "MESSAGE audit (event …)" for a logical decoding message.
func Summary(ev *decoder.Event) string {
	if ev.Op == decoder.OpMessage && ev.Message != nil {
		return fmt.Sprintf("MESSAGE %s (event %s)", ev.Message.Prefix, ev.ID)
	}
	return fmt.Sprintf("%s on %s.%s (event %s)", ev.Op, ev.Schema, ev.Table, ev.ID)
}

// Deliver posts one message.
func (s *Sink) Deliver(ctx context.Context, ev *decoder.Event) error {
	text := Summary(ev)
	if s.text != nil {
		var err error
		if text, err = s.text.Render(eval.NewEnv(ev, s.meta)); err != nil {
			return sinks.Permanent("template", fmt.Errorf("render message_template: %w", err))
		}
	}
	if strings.TrimSpace(text) == "" {
		return sinks.Permanent("empty_message", errors.New("message_template rendered an empty message, which Slack refuses"))
	}
	body, err := json.Marshal(message{Text: text, Channel: s.cfg.Channel})
	if err != nil {
		return sinks.Permanent("encode", fmt.Errorf("encode slack message: %w", err))
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.cfg.WebhookURL.Value(), bytes.NewReader(body))
	if err != nil {
		return sinks.Permanent("request", fmt.Errorf("build request to %s", egress.RedactURL(s.url)))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "fraiseql-observers")
	// Slack ignores it; it lets net/http resend the request when a kept-alive
	// connection turns out to be closed before anything was answered.
	req.Header.Set("Idempotency-Key", ev.ID.String())
	resp, err := s.client.Do(req)
	if err != nil {
		err = egress.TransportError(ctx, http.MethodPost, s.url, err)
		if sinks.Class(err) == "timeout" {
			err = fmt.Errorf("%w (timeout %s)", err, s.cfg.Timeout)
		}
		return err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		egress.Drain(resp.Body)
		return nil
	}
	detail := errorCode(egress.ReadCapped(resp.Body, egress.MaxResponseBytes))
	return fmt.Errorf("POST %s: %w", egress.RedactURL(s.url), egress.StatusError(resp, time.Now(), detail))
}

var slackCode = regexp.MustCompile(`^[a-z_]{1,64}$`)

// errorCode returns Slack's error code ("invalid_payload", "channel_not_found") when
// the body is one, else "" (a body is never quoted, it could echo anything).
func errorCode(body []byte) string {
	if b := bytes.TrimSpace(body); slackCode.Match(b) {
		return string(b)
	}
	return ""
}

// Close closes idle connections.
func (s *Sink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
