package main

import (
	"strings"
	"testing"
)

func TestSlackAction(t *testing.T) {
	env := map[string]string{"SLACK_URL": "https://hooks.slack.com/services/T0/B0/SECRETPART"}
	wantBuilt(t, "type: slack\nwebhook_url_env: SLACK_URL", env)
	wantBuilt(t, "type: slack\nwebhook_url: https://hooks.slack.com/services/T0/B0/X\nchannel: \"#ops\"\nmessage_template: Order {{ new.id }} shipped\ntimeout: 3s", env)

	wantError(t, "type: slack\nchannel: \"#ops\"", env, "type: slack", "webhook_url: a webhook URL is required")
	wantError(t, "type: slack\nwebhook_url: https://hooks.slack.com/x\nwebhook_url_env: SLACK_URL", env, "SLACK_URL", "mutually exclusive")
	wantError(t, "type: slack\nwebhook_url_env: UNSET", env, "UNSET", "UNSET is not set")
	wantError(t, "type: slack\nwebhook_url: ftp://hooks.slack.com/x", env, "ftp://", "only http and https")
	wantError(t, "type: slack\nwebhook_url: http://192.168.1.10/hook", env, "http://192", "private")
	wantError(t, "type: slack\nwebhook_url_env: SLACK_URL\nmessage_template: hi {{ new.id", env, "{{", "message_template: unclosed {{")
	wantError(t, "type: slack\nwebhook_url_env: SLACK_URL\nmessage: hi", env, "message: hi", `unknown key "message"`)
	wantError(t, "type: slack\nwebhook_url_env: SLACK_URL\ntimeout: -2s", env, "-2s", "negative")

	_, err := buildAction(t, "type: slack\nwebhook_url: http://10.0.0.1/services/T0/B0/SECRETPART", env, true)
	if err == nil || strings.Contains(err.Error(), "SECRETPART") {
		t.Fatalf("unexpected error: %v", err)
	}
}
