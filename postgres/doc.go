// Package postgres opens the scanfleet store on PostgreSQL, through pgx's
// database/sql driver. It is the engine for the distributed setup, where
// several server replicas share one database.
//
// The store itself is sqlstore.DB; this package only connects, migrates
// under an advisory lock, and supplies PostgreSQL's sqlstore.Dialect. The
// pgtest package gives tests an isolated schema.
package postgres
