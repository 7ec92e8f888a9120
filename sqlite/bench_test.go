package sqlite_test

import (
	"testing"

	"github.com/scanfleet/scanfleet/sqlstore"
	"github.com/scanfleet/scanfleet/storetest"
)

// BenchmarkIngest compares UpsertRecords with a raw multi-row INSERT of the
// same 10,000 service records on the same database file:
//
//	go test -run '^$' -bench Ingest -benchtime 3x ./sqlite
func BenchmarkIngest(b *testing.B) {
	db := open(b)
	storetest.BenchIngest(b, db, storetest.BenchConfig{
		Raw:       db.Writer(),
		Rebind:    db.Dialect().Rebind,
		Records:   10000,
		BatchSize: sqlstore.BatchSize,
	})
}
