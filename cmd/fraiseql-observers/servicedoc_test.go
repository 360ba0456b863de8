package main

import "github.com/fraiseql/fraiseql-observers/service"

// The documents of the admin endpoint, under the names the tests of this package
// read them by.
type (
	statusDoc     = service.StatusDoc
	leaderDoc     = service.LeaderDoc
	cacheStatsDoc = service.CacheStatsDoc
)
