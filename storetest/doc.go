// Package storetest is the test suite every scanfleet.Store passes. The
// sqlite and postgres packages run it with Run against a fresh database per
// test, as river runs riverdrivertest against each of its drivers; a new
// engine is done when it passes. BenchIngest measures record ingest against
// a raw multi-row INSERT of the same rows in the same run.
package storetest
