// Package execscan runs external executors: programs in any language that a
// worker starts for a task, configured by a manifest next to the program,
// as Faraday's agent dispatcher runs its executors.
//
// The contract is Faraday's, so that a Faraday executor runs unchanged:
// arguments arrive as EXECUTOR_CONFIG_<NAME> environment variables, plugin
// options as AGENT_CONFIG_<NAME>, stdout carries JSON (a scanfleet record
// with "kind" or a Faraday bulk_create document per line) and stderr is the
// task's log. Where Faraday loses data, execscan does not: a blank line is
// skipped rather than taken as the end of output, a line over the limit or
// a line that is not JSON fails the task naming the line instead of being
// dropped, and output is ingested as it arrives rather than once the
// program ends.
//
// Every target is checked against the task's scope before the program sees
// it; a timeout or cancel kills the program's whole process group.
//
// executors/README.md at the repository root is the guide for executor
// authors.
package execscan
