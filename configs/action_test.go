package configs

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// webhookOptions is shaped like a sink's options struct.
type webhookOptions struct {
	URL           string            `yaml:"url,env"`
	Method        string            `yaml:"method"`
	Headers       map[string]string `yaml:"headers"`
	SigningSecret Secret            `yaml:"signing_secret"`
	Timeout       time.Duration     `yaml:"timeout"`
	MaxBody       Size              `yaml:"max_body"`
	Retries       *int              `yaml:"retries"`
	Params        any               `yaml:"params"`
	TLS           struct {
		Insecure bool     `yaml:"insecure"`
		CAs      []string `yaml:"cas"`
	} `yaml:"tls"`
	common
}

type common struct {
	Label string `yaml:"label"`
}

func firstAction(t *testing.T, body string, e env) *Action {
	t.Helper()
	cfg, _ := mustParse(t, src+"observers:\n  o:\n    entity: t\n    actions:\n      - type: webhook\n        name: hook\n"+body, e)
	return cfg.Observers[0].Actions[0]
}

func TestActionDecode(t *testing.T) {
	a := firstAction(t, `        url: https://example.com/${PATHPART}
        headers: {X-Team: fulfilment, X-Id: 42}
        signing_secret: ${SIGNING}
        timeout: 5s
        max_body: 1MiB
        retries: 0
        params: {a: [1, 2.5, true, null, "x"], b: {c: d}}
        tls: {insecure: true, cas: [a.pem]}
        label: blue
`, env{"PATHPART": "hook", "SIGNING": "whsec_x"})
	opts := webhookOptions{Method: "POST"}
	if err := a.Decode(&opts); err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
	zero := 0
	want := webhookOptions{
		URL: "https://example.com/hook", Method: "POST",
		Headers:       map[string]string{"X-Team": "fulfilment", "X-Id": "42"},
		SigningSecret: NewSecret("whsec_x"), Timeout: 5 * time.Second, MaxBody: 1 << 20, Retries: &zero,
		Params: map[string]any{"a": []any{int64(1), 2.5, true, nil, "x"}, "b": map[string]any{"c": "d"}},
		common: common{Label: "blue"},
	}
	want.TLS.Insecure, want.TLS.CAs = true, []string{"a.pem"}
	if !reflect.DeepEqual(opts, want) {
		t.Fatalf("unexpected options; got\n%#v\nwant\n%#v", opts, want)
	}
	if a.Type != "webhook" || a.Name != "hook" || a.ID != "o.hook" {
		t.Fatalf("unexpected action; got %+v", a)
	}
	if !a.Has("url") || a.Has("url_env") {
		t.Fatalf("unexpected Has results")
	}
	if a.Ordered || a.MaxConcurrency != 0 {
		t.Fatalf("unexpected delivery settings; got ordered %v, max_concurrency %d; want the defaults", a.Ordered, a.MaxConcurrency)
	}
}

// TestActionDeliveryKeys: ordered and max_concurrency are read by the loader for every
// action type and are not passed on to the sink's options.
func TestActionDeliveryKeys(t *testing.T) {
	a := firstAction(t, "        url: https://example.com\n        ordered: true\n        max_concurrency: 3\n", nil)
	if !a.Ordered || a.MaxConcurrency != 3 {
		t.Fatalf("unexpected delivery settings; got ordered %v, max_concurrency %d; want true, 3", a.Ordered, a.MaxConcurrency)
	}
	var opts webhookOptions
	if err := a.Decode(&opts); err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
}

func TestActionDecodeErrors(t *testing.T) {
	a := firstAction(t, `        urll: https://example.com
        timeout: 5
        max_body: lots
        headers: [a]
        tls: {insecure: maybe, ca: x}
        url_env: HOOK_URL
        method: ${METHOD}
        retries: 1.5
`, nil)
	var opts webhookOptions
	err := a.Decode(&opts)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("unexpected error %v", err)
	}
	want := []string{
		`c.yaml:9:9: action o.hook: unknown key "urll" (did you mean "url"?)`,
		`c.yaml:10:18: action o.hook: timeout: invalid duration "5": a duration needs a unit`,
		`c.yaml:11:19: action o.hook: max_body: invalid size "lots"`,
		`c.yaml:12:18: action o.hook: headers: expected a mapping, got a list`,
		`c.yaml:13:25: action o.hook: tls.insecure: expected true or false, got a string "maybe"`,
		`c.yaml:13:32: action o.hook: tls: unknown key "ca" (did you mean "cas"?)`,
		`c.yaml:14:18: action o.hook: url_env: environment variable HOOK_URL is not set`,
		`c.yaml:15:17: action o.hook: method: environment variable METHOD is not set`,
		`c.yaml:16:18: action o.hook: retries: expected an integer, got a number "1.5"`,
	}
	if len(errs.List) != len(want) {
		t.Fatalf("unexpected errors; got\n%v", err)
	}
	for i, e := range errs.List {
		if !strings.HasPrefix(e.Error(), want[i]) {
			t.Errorf("unexpected error %d; got %q; want prefix %q", i, e.Error(), want[i])
		}
	}

	if err := a.Decode(opts); err == nil || !strings.Contains(err.Error(), "need a non-nil pointer to a struct") {
		t.Fatalf("unexpected error for a non-pointer; got %v", err)
	}
}

func TestActionErrorf(t *testing.T) {
	a := firstAction(t, "        url: https://example.com\n        url_env: HOOK\n", env{"HOOK": "x"})
	err := a.Errorf("url and url_env are mutually exclusive")
	if got := err.Error(); got != "c.yaml:7:9: action o.hook: url and url_env are mutually exclusive" {
		t.Fatalf("unexpected error; got %q", got)
	}
	err = a.ErrorfAt("url_env", "mutually exclusive with url")
	if got := err.Error(); got != "c.yaml:10:18: action o.hook: url_env: mutually exclusive with url" {
		t.Fatalf("unexpected error; got %q", got)
	}
	if got := a.ErrorfAt("absent", "x").(*Error).Pos; got != a.Pos { //nolint:errorlint // asserts the concrete type ErrorfAt returns
		t.Fatalf("unexpected position for an absent key; got %v; want %v", got, a.Pos)
	}
	if a.TypePos.String() != "c.yaml:7:15" {
		t.Fatalf("unexpected type position; got %v", a.TypePos)
	}
}

// TestActionDuplicatesReportedOnce checks that Load reports a duplicate key in
// an action and Decode, which the wiring calls after Load, does not again.
func TestActionDuplicatesReportedOnce(t *testing.T) {
	errs := parseErrors(t, obs+"        url: a\n        url: b\n", nil)
	if len(errs) != 1 || !hasError(errs, "c.yaml:9:9", `observers.o.actions[0]: duplicate key "url"`) {
		t.Fatalf("unexpected errors: %v", errs)
	}
}

func TestDidYouMean(t *testing.T) {
	known := []string{"webhook", "slack", "email", "nats", "kafka", "redis", "rabbitmq", "database", "file", "log"}
	f := func(word, want string) {
		t.Helper()
		if got := DidYouMean(word, known); got != want {
			t.Fatalf("unexpected hint for %q; got %q; want %q", word, got, want)
		}
	}
	f("webhok", ` (did you mean "webhook"?)`)
	f("Slack", ` (did you mean "slack"?)`)
	f("kafak", ` (did you mean "kafka"?)`)
	f("sms", "")
	f("x", "")
	f(strings.Repeat("a", 200), "")
}
