package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
)

func TestValidateConfig(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE orders (id int PRIMARY KEY, status text); CREATE TABLE other (id int PRIMARY KEY);
	         CREATE TABLE nokey (v int); CREATE PUBLICATION obs_pub FOR TABLE orders, nokey`)
	good := writeConfig(t, fmt.Sprintf(`
source: {dsn: %q, slot: obs_slot, publication: obs_pub, manage_slot: true}
caching: {enabled: false}
admin: {listen: ""}
observers:
  shipped:
    table: public.orders
    event_type: UPDATE
    condition: "field_changed_to('status', 'shipped')"
    actions: [{type: stdout}]
  others:
    table: public.other
    event_type: INSERT
    actions: [{type: stdout}]
  nokey:
    table: public.nokey
    event_type: DELETE
    actions: [{type: stdout}]
`, db.DSN()))

	t.Run("valid", func(t *testing.T) {
		r := expectCLI(t, nil, 0, []string{"Configuration is valid", "3 observers, 3 actions"}, "validate-config", good)
		if !strings.HasPrefix(r.stdout, "Configuration is valid\n") {
			t.Fatalf("the first line is not \"Configuration is valid\":\n%s", r.stdout)
		}
		var v validation
		cliJSON(t, nil, &v, "validate-config", good)
		if !v.Valid || len(v.Errors) != 0 || v.Summary.Observers != 3 || v.ChecksRun {
			t.Fatalf("unexpected validation %+v", v)
		}
		// Without FILE: --config, as the seed's `validate-config --detailed` does.
		expectCLI(t, nil, exitPrefight, []string{"Configuration is valid"}, "validate-config", "--config", good, "--detailed")
	})

	t.Run("detailed", func(t *testing.T) {
		r := expectCLI(t, nil, exitPrefight, []string{
			"OK    wal_level is logical",
			"OK    publication obs_pub exists with 2 tables",
			"OK    slot obs_slot does not exist yet; start creates it (manage_slot)",
			"WARN  observer shipped's condition reads old values, but public.orders logs only its key",
			"FAIL  observer others: public.other is not in publication obs_pub: observers of it never fire; ALTER PUBLICATION",
			"FAIL  public.nokey has no usable replica identity",
			"may create them in schema public at start",
			"2 failed",
		}, "validate-config", good, "--detailed")
		_ = r
		var v validation
		rr := cli(t, nil, "validate-config", good, "--detailed", "--format", "json")
		if rr.code != exitPrefight {
			t.Fatalf("unexpected exit code %d", rr.code)
		}
		if err := jsonUnmarshal(rr.stdout, &v); err != nil || !v.ChecksRun || len(v.Checks) < 8 {
			t.Fatalf("unexpected detailed validation %v %+v", err, v)
		}
	})

	t.Run("errors with positions", func(t *testing.T) {
		bad := writeConfig(t, `
source: {dsn: "host=x", slot: obs_slot, publication: obs_pub}
checkpoints: {enabled: true, interval: 1s}
observers:
  o:
    table: public.orders
    event_type: UPDATE
    condition: "status ==== 'x'"
    actions:
      - {type: fil, path: /tmp/x}
      - {type: file}
`)
		r := expectCLI(t, nil, exitConfig, []string{"Configuration is invalid"}, "validate-config", bad)
		for _, want := range []string{bad + ":8:", bad + ":10:", bad + ":11:", `unknown action type "fil"`, "path is required"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, r.stdout)
			}
		}
		var v validation
		rr := cli(t, nil, "validate-config", bad, "-f", "json")
		if err := jsonUnmarshal(rr.stdout, &v); err != nil || v.Valid || len(v.Errors) != 3 || v.Errors[0].Line != 8 {
			t.Fatalf("unexpected JSON of an invalid configuration %v %+v", err, v)
		}
		// Errors in the file's structure and values come first, all of them at once.
		bad2 := writeConfig(t, `
source: {dsn: "host=x", slot: obs_slot, publication: obs_pub}
checkpoints: {enabled: true, interval: -1s}
logging: {level: loud}
`)
		expectCLI(t, nil, exitConfig, []string{bad2 + ":3:40: checkpoints.interval: must be positive", bad2 + ":4:", `unknown level "loud"`}, "validate-config", bad2)
	})

	t.Run("seed rollback snippet", func(t *testing.T) {
		data, err := os.ReadFile("../../configs/testdata/seed_rollback.yaml")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(path, data, 0o600)
		expectCLI(t, nil, exitConfig, []string{
			path + ":2:3: `checkpoints` is a top-level setting, not an observer: move it out of `observers:`",
			path + ":4:3: `concurrent_execution` is a top-level setting, not an observer",
		}, "validate-config", path)
	})

	t.Run("missing file", func(t *testing.T) {
		r := cli(t, nil, "validate-config", filepath.Join(t.TempDir(), "nope.yaml"))
		if r.code != exitConfig || !strings.Contains(r.stderr, "no such file") {
			t.Fatalf("unexpected result for a missing file: %+v", r)
		}
	})
}

// TestConditionErrorPositions: a condition's compile error points at the offending
// character in the file, whether the condition is quoted, plain or a block scalar.
func TestConditionErrorPositions(t *testing.T) {
	cfg := writeConfig(t, `source: {dsn: "postgres://app@db/app"}
observers:
  quoted:
    entity: orders
    condition: "status == 'shipped' && nosuch(1)"
    actions: [{type: stdout}]
  plain:
    entity: orders
    condition: status == 'shipped' && nosuch(1)
    actions: [{type: stdout}]
  block:
    entity: orders
    condition: |
      status == 'shipped'
        && nosuch(1)
    actions: [{type: stdout}]
`)
	r := cli(t, nil, "validate-config", cfg)
	for _, want := range []string{
		cfg + ":5:40: observer quoted: condition: unknown function nosuch",
		cfg + ":9:39: observer plain: condition: unknown function nosuch",
		cfg + ":15:12: observer block: condition: unknown function nosuch",
	} {
		if r.code != exitConfig || !strings.Contains(r.stdout+r.stderr, want) {
			t.Fatalf("exit code %d, output lacks %q:\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
}

// TestSmallerBadErrors: validate-config (and start) say each of these problems once,
// in a sentence, at the key's file:line:column, where they used to read badly
// ("... address address", "a unspecified", "open X: open X:") or pass unnoticed (a
// missing directory, a DSN that start refuses, a template in a webhook url).
func TestSmallerBadErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	cases := []struct {
		name   string
		dsn    string // source.dsn; a valid one when empty
		action string // the observer's only action
		want   string // in the output, after "FILE:"
		not    string // never in the output
	}{
		{"legacy numeric host", "", "{type: webhook, url: 'http://2130706433/hook'}",
			"7:30: action o.0: url: egress blocked: 2130706433 is a legacy numeric form of 127.0.0.1: write addresses in canonical form", "address address"},
		{"unspecified address", "", "{type: webhook, url: 'http://0.0.0.0/hook'}",
			"7:30: action o.0: url: egress blocked: 0.0.0.0 is an unspecified address (list it in allowed_hosts", "a unspecified"},
		{"link-local address", "", "{type: webhook, url: 'http://169.254.169.254/latest'}",
			"7:30: action o.0: url: egress blocked: 169.254.169.254 is a link-local address", "link_local"},
		{"templated webhook url", "", "{type: webhook, url: 'https://hooks.example.com/orders/{{ new.id }}'}",
			`7:30: action o.0: url: holds "{": url is not a template`, "%7B%7B"},
		{"missing directory of a file action", "", "{type: file, path: '" + missing + "/out.jsonl'}",
			"7:28: action o.0: path: directory " + missing + " does not exist", "open "},
		{"DSN that start refuses", "postgres://u:x@h:5432:99/post gres?sslmode=bogus", "{type: stdout}",
			`2:8: source.dsn: "postgres://u:xxxxx@h:5432:99/post gres?sslmode=bogus" cannot be used: failed to parse as URL (unexpected spaces found in "post gres"`, ":x@"},
		{"DSN with an unknown sslmode", "postgres://u@h/db?sslmode=bogus", "{type: stdout}",
			`2:8: source.dsn: "postgres://u@h/db?sslmode=bogus" cannot be used: failed to configure TLS (sslmode is invalid)`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dsn := c.dsn
			if dsn == "" {
				dsn = "postgres://app@db/app"
			}
			cfg := writeConfig(t, fmt.Sprintf(`source:
  dsn: %q
observers:
  o:
    entity: public.orders
    actions:
      - %s
`, dsn, c.action))
			for _, cmd := range [][]string{{"validate-config", cfg}, {"start", "--config", cfg}} {
				r := cli(t, nil, cmd...)
				out := r.stdout + r.stderr
				if r.code != exitConfig || !strings.Contains(out, cfg+":"+c.want) || c.not != "" && strings.Contains(out, c.not) {
					t.Fatalf("%s: exit code %d; want %d with %q (and no %q):\n%s", cmd[0], r.code, exitConfig, cfg+":"+c.want, c.not, out)
				}
			}
		})
	}
}
