package service

import (
	"context"
	"strings"
	"testing"

	"github.com/fraiseql/fraiseql-observers/configs"
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
	problems, err := ColumnProblems(context.Background(), db.Conn(), o, templates)
	if err != nil {
		t.Fatal(err)
	}
	want := `observer all's action all.out reads column "vv" in message_template, which public.t does not have, so the template fails for every event of the table (and the event goes to the DLQ) unless the read is optional (?. or ??) (did you mean "v"?)`
	if len(problems) != 1 || !strings.Contains(problems[0], want) {
		t.Fatalf("problems = %q\nwant one containing %q", problems, want)
	}
}
