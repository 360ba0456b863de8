package configs

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestRedactDSN(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := RedactDSN(in); got != want {
			t.Fatalf("unexpected redaction of %q; got %q; want %q", in, got, want)
		}
	}
	// Nothing to redact.
	f("", "")
	f("postgres://app@db:5432/app?sslmode=verify-full", "postgres://app@db:5432/app?sslmode=verify-full")
	f("host=db user=app dbname=app", "host=db user=app dbname=app")
	f("postgres:///app?host=/tmp", "postgres:///app?host=/tmp")

	// URL form.
	f("postgres://app:secret@db/app", "postgres://app:xxxxx@db/app")
	f("postgresql://app:s%40cr%2Ft@db:5432,db2:5432/app", "postgresql://app:xxxxx@db:5432,db2:5432/app")
	f("postgres://app:p@ss:w/rd@db/app", "postgres://app:xxxxx@db/app")
	f("postgres://app:@db/app", "postgres://app:xxxxx@db/app")
	f("postgres://app@db/app?sslmode=require&password=secret", "postgres://app@db/app?sslmode=require&password=xxxxx")
	f("postgres://app@db/app?sslpassword=secret&x=1", "postgres://app@db/app?sslpassword=xxxxx")
	f("POSTGRES://APP:SECRET@DB/APP", "POSTGRES://APP:xxxxx@DB/APP")

	// Keyword/value form.
	f("host=db password=secret dbname=app", "host=db password=xxxxx dbname=app")
	f("host=db password = 'sec ret' dbname=app", "host=db password = xxxxx dbname=app")
	f(`host=db password='it\'s' user=app`, "host=db password=xxxxx user=app")
	f(`password=a\ b host=db`, "password=xxxxx host=db")
	f("host=db sslpassword=secret", "host=db sslpassword=xxxxx")

	// Malformed: never anything after "password=".
	f("host=db password='unterminated secret", "host=db password=xxxxx")
	f("host=db password=sec ret dbname=app", "host=db password=xxxxx")
	f("garbage PASSWORD=secret", "garbage PASSWORD=xxxxx")
	f("app:secret@db/app", "app:xxxxx@db/app")
	f("postgres//app:secret@db/app", "postgres//app:xxxxx@db/app")
	f("postgres://db:5432/app", "postgres://db:5432/app") // no "@": a host:port, not a password
	f("app:0//0@db/app", "app:xxxxx@db/app")
	f("postgres:/app:0://x@db/app", "postgres:xxxxx@db/app")
	f("app://00@db/app", "app:xxxxx@db/app")
	f("ftp://app:secret@db/app", "ftp:xxxxx@db/app")
}

// canaries are passwords with every character that confuses DSN parsers.
var canaries = []string{`p@ss:w/rd%x\`, `pa'ss\wo rd@:/%`, `sq?#&=;{}[]`}

// leaks reports where canary c shows up in s, in any of its encodings or as
// a large piece.
func leaks(s, c string) string {
	forms := map[string]string{
		"plain":         c,
		"query-escaped": url.QueryEscape(c),
		"path-escaped":  url.PathEscape(c),
		"base64":        base64.StdEncoding.EncodeToString([]byte(c)),
	}
	for name, form := range forms {
		if strings.Contains(s, form) {
			return name
		}
	}
	// Pieces around an "@", in case a parser split the password there.
	for _, piece := range strings.FieldsFunc(c, func(r rune) bool { return r == '@' || r == ' ' }) {
		if len(piece) >= 4 && strings.Contains(s, piece) {
			return fmt.Sprintf("piece %q", piece)
		}
	}
	return ""
}

// TestCanaryNeverShown is the configuration part of reliability test S3: a
// password never appears in an error, a warning or a formatted Config.
func TestCanaryNeverShown(t *testing.T) {
	for _, c := range canaries {
		enc := url.UserPassword("app", c).String() // app:<escaped>
		kv := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(c)
		dsns := []string{
			"postgres://app:" + c + "@db/app",    // raw: not a valid URL
			"postgres://" + enc + "@db:port/app", // valid userinfo, bad port
			"postgres://" + enc + "@db/app",      // valid
			"postgresql://" + enc + "@db/app?password=" + url.QueryEscape(c),
			"ftp://app:" + c + "@db/app",               // wrong scheme
			"host=db password='" + kv + "' dbname=app", // valid
			"host=db password='" + kv,                  // unterminated quote
			"host=db password=" + c + " dbname=app",    // unquoted
			"app:" + c + "@db/app",                     // no scheme
			"postgres//app:" + c + "@db/app",           // typo in the scheme
		}
		for _, dsn := range dsns {
			if where := leaks(RedactDSN(dsn), c); where != "" {
				t.Errorf("RedactDSN(%q) = %q leaks the canary (%s)", dsn, RedactDSN(dsn), where)
			}
			e := env{"PGDSN": dsn, "PW": c}
			yamlDSN := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(dsn)
			sources := []string{
				"source:\n  dsn: \"" + yamlDSN + "\"\n",
				"source:\n  dsn_env: PGDSN\n",
				"source:\n  dsn: ${PGDSN}\n",
				"source:\n  dsn: \"" + yamlDSN + "\"\n  dsn_env: PGDSN\n",
				"source:\n  dsn_env: \"" + yamlDSN + "\"\n",
				"source:\n  dsn: \"" + yamlDSN + "\"\n  slot: ${PW}\n",
				"source:\n  dsn: \"" + yamlDSN + "\"\n  passwrd: \"" + yamlDSN + "\"\n",
			}
			for _, s := range sources {
				for _, tail := range []string{"", obs[len(src):], "observers: [x]\nlisten: 1\n"} {
					cfg, warns, err := Parse("c.yaml", []byte(s+tail), e.lookup)
					var out strings.Builder
					if err != nil {
						out.WriteString(err.Error())
					}
					for _, w := range warns {
						out.WriteString(w.String())
					}
					if cfg != nil {
						js, _ := json.Marshal(cfg)
						fmt.Fprintf(&out, "%v %+v %#v %s %s", cfg, cfg, cfg, js, cfg.Source.DSN)
					}
					if where := leaks(out.String(), c); where != "" {
						t.Errorf("canary leaks (%s) for\n%s\ngot\n%s", where, s+tail, out.String())
					}
				}
			}
		}
	}
}

func TestSecretFormatting(t *testing.T) {
	s := NewSecret("hunter2")
	for _, got := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %q %#v %+v", s, s, s, s, s)} {
		if strings.Contains(got, "hunter2") {
			t.Fatalf("unexpected secret in %q", got)
		}
	}
	js, _ := json.Marshal(struct{ S Secret }{s})
	if string(js) != `{"S":"[redacted]"}` {
		t.Fatalf("unexpected JSON; got %s", js)
	}
	if (Secret{}).String() != "" {
		t.Fatalf("unexpected string for an empty secret")
	}
	r := EnvSecret("TOKEN", "hunter2")
	if got := fmt.Sprintf("%v %+v %#v %s", r, r, r, r); strings.Contains(got, "hunter2") {
		t.Fatalf("unexpected secret in %q", got)
	}
}
