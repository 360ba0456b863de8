package service

import (
	"context"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/configs"
	"github.com/fraiseql/fraiseql-observers/internal/pgtest"
	"github.com/fraiseql/fraiseql-observers/sinks"
)

// TestTemplateColumnProblems: a template that reads a column its table does not
// have fails for every event, as a condition does: the column check names the
// observer, the action, the template's key, the column and where it is, with a
// suggestion; templates that read only existing columns are not reported.
func TestTemplateColumnProblems(t *testing.T) {
	db := newDB(t)
	cfg := testConfig(t, db, "cols", "")
	o := cfg.Observers[0]
	templates := func(*configs.Action) []sinks.TemplateSource {
		return []sinks.TemplateSource{
			{Key: "message_template", Src: "row {{ new.id }} is {{ new.vv }}"},
			{Key: "subject", Src: "t.{{ id }}.{{ v }}"},
		}
	}
	problems, err := ColumnProblems(context.Background(), db.Conn(), cfg.Source.Publication, o, templates)
	if err != nil {
		t.Fatal(err)
	}
	want := `observer all's action all.out reads column "vv" in message_template, which public.t does not have, so the template fails for every event of the table (and the event goes to the DLQ) unless the read is optional (?. or ??) (did you mean "v"?)`
	if len(problems) != 1 || !strings.Contains(problems[0], want) {
		t.Fatalf("problems = %q\nwant one containing %q", problems, want)
	}
}

// TestColumnListProblems: a publication with a column list replicates only those
// columns (PostgreSQL 15 and later): a condition or a template that reads another
// column of the table fails for every event, and the check says which publication
// leaves it out; columns in the list are not reported.
func TestColumnListProblems(t *testing.T) {
	db := pgtest.NewDB(t)
	db.Exec(`CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL, secret text); CREATE PUBLICATION obs_pub FOR TABLE t (id, v)`)
	cfg := testConfig(t, db, "cols", "")
	o := cfg.Observers[0]
	o.Condition = "v > 1 && secret != ''"
	templates := func(*configs.Action) []sinks.TemplateSource {
		return []sinks.TemplateSource{{Key: "message_template", Src: "row {{ new.id }}: {{ new.secret }}"}}
	}
	problems, err := ColumnProblems(context.Background(), db.Conn(), cfg.Source.Publication, o, templates)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`observer all's condition reads column "secret", a column of public.t that publication obs_pub does not replicate (its column list for the table leaves it out), so every event of the table fails the condition`,
		`observer all's action all.out reads column "secret" in message_template, a column of public.t that publication obs_pub does not replicate`,
	}
	if len(problems) != len(want) {
		t.Fatalf("problems = %q\nwant %d", problems, len(want))
	}
	for i, w := range want {
		if !strings.Contains(problems[i], w) {
			t.Fatalf("problem %d = %q\nwant one containing %q", i, problems[i], w)
		}
	}
	// Without the column list every column is replicated.
	db.Exec(`ALTER PUBLICATION obs_pub SET TABLE t`)
	if problems, err = ColumnProblems(context.Background(), db.Conn(), cfg.Source.Publication, o, templates); err != nil || len(problems) != 0 {
		t.Fatalf("unexpected problems without a column list: %q, %v", problems, err)
	}
}
