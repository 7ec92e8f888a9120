// Package scanfleet holds the domain of the scanfleet attack-surface scanning
// platform: workspaces and their scope, task types, scans, tasks and their
// lifecycle, inventory records, API tokens, and the Store interface that the
// storage engines implement.
//
// The root package depends on nothing but the standard library and a few
// small helpers; every technology lives in a package of its own
// (sqlstore, sqlite, postgres, http, cli, attacksurface) and talks to the
// others through the types declared here.
package scanfleet
