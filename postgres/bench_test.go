package postgres_test

import (
	"testing"

	"github.com/scanfleet/scanfleet/sqlstore"
	"github.com/scanfleet/scanfleet/storetest"
)

// BenchmarkIngest compares UpsertRecords with a raw multi-row INSERT of the
// same 10,000 service records in the same schema:
//
//	TEST_DATABASE_URL=postgres://… go test -run '^$' -bench Ingest -benchtime 3x ./postgres
func BenchmarkIngest(b *testing.B) {
	db := open(b)
	storetest.BenchIngest(b, db, storetest.BenchConfig{
		Raw:       db.Writer(),
		Rebind:    db.Dialect().Rebind,
		Records:   10000,
		BatchSize: sqlstore.BatchSize,
	})
}

// BenchmarkLifecycle measures the store's share of each task in the
// dispatch benchmark: create, claim (by id, or the next requested) and
// finish, in microseconds a task.
//
//	TEST_DATABASE_URL=postgres://… go test -run '^$' -bench Lifecycle -benchtime 3x ./postgres
func BenchmarkLifecycle(b *testing.B) {
	b.Run("by-id", func(b *testing.B) { storetest.BenchLifecycle(b, open(b), 10000, false) })
	b.Run("next", func(b *testing.B) { storetest.BenchLifecycle(b, open(b), 10000, true) })
}

// BenchmarkRunStates compares the scheduler's questions about a scan's
// runs in a workspace with 100,000 ended tasks and in one with ten.
//
//	TEST_DATABASE_URL=postgres://… go test -run '^$' -bench RunStates -benchtime 200x ./postgres
func BenchmarkRunStates(b *testing.B) { storetest.BenchRunStates(b, open(b), 100000) }
