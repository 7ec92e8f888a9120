// Package sqlite opens the scanfleet store on an SQLite file, through the
// pure-Go modernc.org/sqlite driver (no cgo). It is the default engine: a
// single server keeps everything in one file of its data directory.
//
// The store itself is sqlstore.DB; this package only opens the file with
// the right pragmas (WAL, foreign keys, busy timeout), keeps writes on one
// connection, and supplies SQLite's sqlstore.Dialect.
package sqlite
