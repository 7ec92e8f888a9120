// Package router moves tasks from the store to the workers: it dispatches
// the tasks submitted to it (stored already requested in their pool: see
// scanfleet.NewTask), routes created tasks to their pool (requested) and
// dispatches them, puts back tasks whose worker's lease lapsed, and
// dispatches again tasks that no worker took, so that no task is lost
// between the store and the queue.
//
// The store is the source of truth. A dispatch is only a hint to a pool's
// workers; a worker claims the task in the store before it runs it, and a
// stale or duplicate dispatch is dropped there. The HTTP long-poll
// transport needs no dispatch at all: its workers claim from the store.
package router
