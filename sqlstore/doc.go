// Package sqlstore implements scanfleet.Store once, over database/sql, for
// both SQLite and PostgreSQL. The sqlite and postgres packages open the
// connections, pick a Dialect (placeholder style, parameter limit, row
// locks, how the driver reports constraint violations) and return a *DB;
// everything else, schema included, is shared here.
//
// # Schema
//
// One goose migration set (migrations/, embedded) serves both engines: ids
// are TEXT UUIDv7, times BIGINT microseconds since the Unix epoch (UTC),
// durations BIGINT nanoseconds, JSON TEXT written by encoding/json with
// sorted keys, flags BOOLEAN. Deleting a workspace deletes its records,
// tasks, task logs and scan links by cascade; deleting a scan keeps its
// tasks, whose scan_id stays as it was.
//
// # Errors
//
// Driver errors are translated at this boundary: a unique violation is
// scanfleet.ECONFLICT naming what is taken (`workspace "acme" already
// exists`), a missing row ENOTFOUND naming the object, and a reference to
// a missing workspace EINVALID naming it. Anything else is returned wrapped
// with its operation and surfaces to users as "internal error", so SQL text
// never reaches them.
//
// # Running tasks
//
// Workers claim requested tasks and hold them with a lease (LeaseStore).
// Every change is one guarded UPDATE whose WHERE clause names the status
// and holder it needs, so of two racing changes exactly one wins and a
// worker that lost its lease can no longer touch the task. ClaimNext picks
// tasks in a MATERIALIZED CTE, with FOR NO KEY UPDATE SKIP LOCKED under
// PostgreSQL (Dialect.SkipLocked), so that concurrent pollers take
// different tasks and one poll never takes more than it asked for.
// ExpireLeases locks what it sweeps, so servers may sweep at once.
//
// # Pagination
//
// Lists take a scanfleet.Page and return the next page's cursor, "" after
// the last page. A cursor is the base64url of the last row's sort key; the
// next page is the rows strictly after it, so rows inserted meanwhile cause
// neither gaps nor duplicates.
package sqlstore
