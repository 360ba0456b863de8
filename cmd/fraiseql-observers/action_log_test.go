package main

import "testing"

func TestLogAction(t *testing.T) {
	wantBuilt(t, "type: log", nil)
	wantBuilt(t, "type: log\nlevel: warn\nmessage_template: order {{ new.id }} is {{ new.status }}", nil)
	for _, l := range []string{"trace", "debug", "info", "warn", "error"} {
		wantBuilt(t, "type: log\nlevel: "+l, nil)
	}
	wantError(t, "type: log\nlevel: fatal", nil, "fatal", `level: must be trace, debug, info, warn or error, not "fatal"`)
	wantError(t, "type: log\nlevel: INFO", nil, "INFO", "must be trace")
	wantError(t, "type: log\nmessage_template: x {{ new.id", nil, "{{", "message_template: unclosed {{")
	wantError(t, "type: log\nmessage: x", nil, "message: x", `unknown key "message"`)
}
