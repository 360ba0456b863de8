package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fuzzSink is an options struct with every kind of field Action.Decode supports.
type fuzzSink struct {
	URL      string            `yaml:"url,env"`
	Secret   Secret            `yaml:"signing_secret,env"`
	Secrets  []Secret          `yaml:"signing_secrets_env,env"`
	Method   string            `yaml:"method"`
	Headers  map[string]string `yaml:"headers"`
	Timeout  time.Duration     `yaml:"timeout"`
	Max      Size              `yaml:"max_bytes"`
	Count    int               `yaml:"count"`
	Small    int8              `yaml:"small"`
	Port     uint16            `yaml:"port"`
	Ratio    float64           `yaml:"ratio"`
	On       bool              `yaml:"on"`
	Tags     []string          `yaml:"tags"`
	Params   any               `yaml:"params"`
	Optional *int              `yaml:"optional"`
	Nested   struct {
		A string `yaml:"a"`
	} `yaml:"nested"`
}

// FuzzParse checks that Parse never panics and that every error it returns
// is positioned in the file it was given.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"full.yaml", "seed_rollback.yaml"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	for _, name := range []string{"demo.yaml", "production.yaml"} {
		if b, err := os.ReadFile(filepath.Join("examples", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("source: {dsn: 'host=h'}\nobservers:\n  o:\n    entity: '*'\n    actions: [{type: log}]\n"))
	f.Add([]byte("a: &x [*x, *x]\nb: <<: *x\n"))
	f.Add([]byte("source:\n  dsn: ${A:-postgres://u:p@h/d}\n  slot: $${x}\n"))
	f.Add([]byte("\ufeffsource:\r\n  dsn_env: PGDSN\r\n"))
	env := func(name string) (string, bool) {
		switch name {
		case "PGDSN":
			return "postgres://u:p@h/db", true
		case "EMPTY":
			return "", true
		}
		return "", false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := Parse("fuzz.yaml", data, env)
		if err != nil {
			if cfg != nil {
				t.Fatalf("unexpected config with error %v", err)
			}
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) == 0 {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			for _, e := range errs.List {
				if e.Pos.File != "fuzz.yaml" || e.Pos.Line < 1 || e.Pos.Column < 1 {
					t.Fatalf("unexpected position %+v for %q", e.Pos, e.Msg)
				}
			}
			return
		}
		if _, err := cfg.DSN(); err != nil {
			t.Fatalf("unexpected DSN error on a loaded config: %v", err)
		}
		for _, o := range cfg.Observers {
			for _, a := range o.Actions {
				var s fuzzSink
				if err := a.Decode(&s); err != nil {
					var errs *Errors
					if !errors.As(err, &errs) {
						t.Fatalf("unexpected Decode error type %T", err)
					}
					for _, e := range errs.List {
						if e.Pos.File != "fuzz.yaml" || e.Pos.Line < 1 || !strings.HasPrefix(e.Msg, "action "+a.ID+": ") {
							t.Fatalf("unexpected Decode error %v", e)
						}
					}
				}
			}
		}
	})
}

// FuzzRedactDSN checks that a password never survives RedactDSN, whatever
// characters it holds, in the DSN shapes people write.
func FuzzRedactDSN(f *testing.F) {
	for _, c := range canaries {
		f.Add(c)
	}
	f.Add("secret")
	f.Fuzz(func(t *testing.T, pw string) {
		kv := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)
		dsns := []string{
			"postgres://app:" + pw + "@db/app",
			"postgres://app:" + pw + "@db/app?sslmode=require",
			"postgresql://app@db/app?password=" + pw,
			"host=db password='" + kv + "' dbname=app",
			"host=db password='" + kv,
			"app:" + pw + "@db/app",
		}
		if !strings.ContainsAny(pw, " \t\n\r\f\v\\'") {
			dsns = append(dsns, "host=db password="+pw+" dbname=app")
		}
		for _, dsn := range dsns {
			template := strings.Replace(dsn, pw, "", 1)
			if len(pw) < 4 || strings.Contains(template+redactedPassword, pw) || strings.Contains(template, kv) && kv != pw {
				continue // the password is not distinguishable from the rest
			}
			if got := RedactDSN(dsn); strings.Contains(got, pw) {
				t.Fatalf("RedactDSN(%q) = %q keeps the password", dsn, got)
			}
		}
	})
}
