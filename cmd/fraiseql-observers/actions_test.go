package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/configs"
)

// TestActionTypesDocumented: every registered action type has its page
// docs/actions/<type>.md, and every page there is a registered type
// (docs/contributing.md: a type is one package, one line, one page).
func TestActionTypesDocumented(t *testing.T) {
	pages, err := filepath.Glob("../../docs/actions/*.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, p := range pages {
		documented = append(documented, strings.TrimSuffix(filepath.Base(p), ".md"))
	}
	registered := actionTypeNames()
	slices.Sort(registered)
	slices.Sort(documented)
	if !slices.Equal(registered, documented) {
		t.Fatalf("unexpected docs/actions pages; got %v; want one per registered type %v", documented, registered)
	}
	for _, typ := range registered {
		b, err := os.ReadFile(filepath.Join("../../docs/actions", typ+".md"))
		if err != nil || !strings.HasPrefix(string(b), "# `"+typ+"` action") {
			t.Fatalf("docs/actions/%s.md does not start with its title \"# `%s` action\" (%v)", typ, typ, err)
		}
	}
}

// TestActionTemplates: every action type lists the {{ }} templates its configuration
// sets (sinks.Templater), so the column checks see what they read; an unset template
// key is not listed.
func TestActionTemplates(t *testing.T) {
	f := func(action, want string) {
		t.Helper()
		cfg, _, err := configs.Parse("c.yaml", []byte(actionConfig(action)), func(string) (string, bool) { return "https://set.example/x", true })
		if err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		var got []string
		for _, ts := range (actions{cfg: cfg}).Templates(cfg.Observers[0].Actions[0]) {
			got = append(got, ts.Key+"="+ts.Src)
		}
		if strings.Join(got, " ") != want {
			t.Fatalf("%s: unexpected templates; got %q; want %q", action, strings.Join(got, " "), want)
		}
	}
	f("type: webhook\nurl: https://h.example/x\nbody_template: '{\"id\": {{ new.id }}}'", `body_template={"id": {{ new.id }}}`)
	f("type: webhook\nurl: https://h.example/x", "")
	f("type: slack\nwebhook_url_env: S\nmessage_template: 'n {{ new.n }}'", "message_template=n {{ new.n }}")
	f("type: email\nto_template: '{{ new.mail }}'\nsubject_template: 's {{ new.s }}'\nbody_template: 'b {{ new.b }}'\nsmtp: {host: mail.example}",
		"to_template={{ new.mail }} subject_template=s {{ new.s }} body_template=b {{ new.b }}")
	f("type: email\nto: a@example.com\nsubject: plain\nbody_template: 'b'\nsmtp: {host: mail.example}", "body_template=b")
	f("type: kafka\nbrokers: [k:9092]\ntopic: 't.{{ new.k }}'", "topic=t.{{ new.k }}")
	f("type: nats\nurl: nats://n:4222\nsubject: 's.{{ new.k }}'", "subject=s.{{ new.k }}")
	f("type: cache\nurl: redis://r:6379\nkey_pattern: 'k:{{ new.k }}'", "key_pattern=k:{{ new.k }}")
	f("type: redis_stream\nurl: redis://r:6379\nstream: 's:{{ new.k }}'", "stream=s:{{ new.k }}")
	f("type: search\nurl_env: U\nindex: 'i-{{ new.k }}'\nid_template: '{{ new.id }}'", "index=i-{{ new.k }} id_template={{ new.id }}")
	f("type: rabbitmq\nurl_env: U\nexchange: 'x.{{ new.k }}'\nrouting_key: 'r.{{ new.r }}'", "exchange=x.{{ new.k }} routing_key=r.{{ new.r }}")
	f("type: log\nmessage_template: 'm {{ new.m }}'", "message_template=m {{ new.m }}")
	f("type: file\npath: /tmp/x.jsonl", "")
	f("type: database\nfunction: public.f", "")
}
