package main

import "testing"

func TestBuildRedisStream(t *testing.T) {
	checkBuild(t, "      - type: redis_stream\n        url: rediss://127.0.0.1:1/2\n        stream: 'cdc:{{ event.table }}'\n", nil, "")
	checkBuild(t, "      - type: redis_stream\n        url: redis://h\n        stream: cdc\n        maxlen: 10000\n        fields: [table, op]\n", nil, "")
	checkBuild(t, "      - type: redis_stream\n        url: redis://h\n", nil, "stream: is required")
	checkBuild(t, "      - type: redis_stream\n        url: redis://h\n        stream: cdc\n        fields: [new]\n", nil,
		`test.yaml:10:17: action o.0: fields: unknown field "new"`)
	checkBuild(t, "      - type: redis_stream\n        url: redis://h?dial_timeout=0\n        stream: cdc\n", nil, "query parameters are not supported")
	checkBuild(t, "      - type: redis_stream\n        url: redis://h\n        stream: cdc\n        maxlen: -5\n", nil, "maxlen: must not be negative")
}
