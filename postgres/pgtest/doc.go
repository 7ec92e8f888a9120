// Package pgtest gives each test its own PostgreSQL schema, so that tests
// of any package can run against one server in parallel without seeing each
// other's rows (river's riverdbtest does the same). Tests skip with a clear
// message when TEST_DATABASE_URL is unset, so `go test ./...` passes on a
// machine without PostgreSQL.
package pgtest
