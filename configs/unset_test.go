package configs

import (
	"errors"
	"strings"
	"testing"
)

// secretShape has every form the env tag option takes.
type secretShape struct {
	URL      Secret   `yaml:"url,env"`
	Host     string   `yaml:"host,env"`
	Password Secret   `yaml:"password_env,env"`
	Keys     []Secret `yaml:"keys_env,env"`
	Nested   struct {
		Token Secret `yaml:"token_env,env"`
	} `yaml:"nested"`
}

func TestEnvTagOption(t *testing.T) {
	e := env{"U": "https://u.example/", "H": "h.internal", "P": "pw", "K1": "k1", "K2": "k2", "T": "tok", "EMPTY": ""}
	a := firstAction(t, "        url_env: U\n        host_env: H\n        password_env: P\n        keys_env: [K1, K2]\n        nested: {token_env: T}\n", e)
	var s secretShape
	if err := a.Decode(&s); err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
	if s.URL.Value() != "https://u.example/" || s.URL.Env() != "U" || s.Host != "h.internal" || s.Password.Value() != "pw" ||
		len(s.Keys) != 2 || s.Keys[1].Value() != "k2" || s.Nested.Token.Value() != "tok" {
		t.Fatalf("unexpected values: %#v", s)
	}
	a = firstAction(t, "        url: https://lit.example/\n        host: h\n", e)
	s = secretShape{}
	if err := a.Decode(&s); err != nil || s.URL.Value() != "https://lit.example/" || s.URL.Env() != "" || s.Host != "h" || s.Password.IsSet() {
		t.Fatalf("unexpected literal values: %#v, %v", s, err)
	}

	f := func(body, want string) {
		t.Helper()
		a := firstAction(t, body, e)
		err := a.Decode(&secretShape{})
		var errs *Errors
		if !errors.As(err, &errs) || !strings.Contains(err.Error(), want) {
			t.Fatalf("unexpected error for\n%s\ngot %v; want one with %q", body, err, want)
		}
	}
	// Both forms: reported at the *_env one, in either order.
	f("        url: https://a.example/\n        url_env: U\n", "c.yaml:10:18: action o.hook: url_env: url and url_env are mutually exclusive")
	f("        url_env: U\n        url: https://a.example/\n", "c.yaml:9:18: action o.hook: url_env: url and url_env are mutually exclusive")
	f("        nested: {token: x}\n", `unknown key "token"`) // only the variable
	f("        password: x\n", `unknown key "password"`)
	f("        password_env: NOPE\n", "password_env: environment variable NOPE is not set")
	f("        password_env: EMPTY\n", "password_env: environment variable EMPTY is empty")
	f("        keys_env: [K1, NOPE]\n", "keys_env[1]: environment variable NOPE is not set")
	f("        keys_env: K1\n", "keys_env: expected a list of environment variable names")
	f("        url_env: ${U}\n", "not a reference")
}

// TestDeferEnv: with Options.DeferEnv a variable that is not set is no error; the
// references are listed with their positions, the secrets are set but unknown,
// the checks of the values are skipped, and Need names what a command lacks.
func TestDeferEnv(t *testing.T) {
	text := "source:\n  dsn_env: PGDSN\n  slot: ${SLOT}\nadmin: {listen: \"127.0.0.1:9187\", token_env: TOKEN}\nlogging: {level: \"${LEVEL}\"}\n" +
		"observers:\n  o:\n    entity: public.orders\n    actions:\n      - type: webhook\n        url_env: HOOK\n        host: ${HOST}\n        password_env: EMPTY\n"
	lookup := func(k string) (string, bool) {
		if k == "EMPTY" {
			return "", true
		}
		return "", false
	}
	// A strict load refuses each of them.
	_, _, err := Parse("c.yaml", []byte(text), lookup)
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.List) != 4 {
		t.Fatalf("unexpected strict errors: %v", err)
	}
	cfg, warns, err := ParseWith("c.yaml", []byte(text), Options{Lookup: lookup, DeferEnv: true})
	if err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
	if len(warns) != 0 {
		t.Fatalf("unexpected warnings: %v", warns)
	}
	var got []string
	for _, u := range cfg.Unset() {
		got = append(got, u.Pos.String()+" "+u.String())
	}
	want := []string{
		"c.yaml:2:12 source.dsn_env: environment variable PGDSN is not set",
		"c.yaml:3:9 source.slot: environment variable SLOT is not set",
		"c.yaml:4:46 admin.token_env: environment variable TOKEN is not set",
		"c.yaml:5:18 logging.level: environment variable LEVEL is not set",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("unexpected unset references; got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !cfg.Source.DSN.IsSet() || cfg.Source.DSN.Known() || cfg.Source.DSN.Env() != "PGDSN" || !cfg.Admin.Token.IsSet() {
		t.Fatalf("unexpected secrets: %#v %#v", cfg.Source.DSN, cfg.Admin.Token)
	}
	if cfg.Source.Slot != Default().Source.Slot || cfg.Logging.Level != "info" {
		t.Fatalf("unexpected values for unset references: slot %q, level %q", cfg.Source.Slot, cfg.Logging.Level)
	}
	if _, err := cfg.DSN(); err == nil || !strings.Contains(err.Error(), "c.yaml:2:12: source.dsn_env: environment variable PGDSN is not set") {
		t.Fatalf("unexpected DSN error: %v", err)
	}
	if err := cfg.Need("admin", "listener_id"); err == nil || strings.Contains(err.Error(), "PGDSN") || !strings.Contains(err.Error(), "c.yaml:4:46: admin.token_env") {
		t.Fatalf("unexpected Need error: %v", err)
	}
	if err := cfg.Need("state", "checkpoints"); err != nil {
		t.Fatalf("unexpected Need error: %v", err)
	}

	a := cfg.Observers[0].Actions[0]
	var s secretShape
	if err := a.Decode(&s); err != nil {
		t.Fatalf("unexpected decode error:\n%v", err)
	}
	if s.URL.Known() || !s.URL.IsSet() || s.Host != "" || !s.Password.IsSet() || s.Password.Known() {
		t.Fatalf("unexpected action values: %#v", s)
	}
	got = got[:0]
	for _, u := range a.Unset() {
		got = append(got, u.Pos.String()+" "+u.String())
	}
	want = []string{
		"c.yaml:11:18 url_env: environment variable HOOK is not set",
		"c.yaml:12:15 host: environment variable HOST is not set",
		"c.yaml:13:23 password_env: environment variable EMPTY is empty",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("unexpected action references; got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	strict, _, _ := Parse("c.yaml", []byte(src+"observers:\n  o:\n    entity: t\n    actions:\n      - {type: webhook, url_env: HOOK}\n"), lookup)
	if u := strict.Observers[0].Actions[0].Unset(); u != nil {
		t.Fatalf("unexpected references of a strict load: %v", u)
	}
}
