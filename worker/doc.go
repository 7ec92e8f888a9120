// Package worker runs tasks: it takes tasks of its pool from a Source (NATS
// JetStream, or the server's HTTP long poll), claims each in the store
// through the server's worker API, runs the task type's Executor, streams
// its records and log lines to the server in bounded chunks, renews the
// task's lease while it runs, and reports the outcome. Only then does it
// acknowledge the dispatch, so a worker that dies loses nothing: its lease
// lapses and the task is retried elsewhere.
//
// Cancel stops the executor through its context within a second or two (an
// external program's whole process group, in its executor). On shutdown a
// worker drains: it takes no new tasks, lets running ones finish for up to
// DrainTimeout, and hands the rest back at once for another worker.
package worker
