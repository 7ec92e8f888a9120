package scanfleet

import (
	"context"
	"time"
)

// DefaultLease is how long a worker holds a task without renewing it.
// Workers renew at a third of it.
const DefaultLease = 30 * time.Second

// ClaimFilter selects the requested tasks a worker may take.
type ClaimFilter struct {
	Pool  Pool
	Site  string   // the worker's site; tasks without a site match any
	Types []string // task types the worker has executors for
	Max   int
}

// MaxClaim is the most tasks one claim takes: ClaimNext returns at most
// this many, ClaimTasks refuses more ids, and a worker with more free slots
// asks in several claims.
const MaxClaim = 500

// LeaseStore is the part of the store that runs tasks: workers claim
// requested tasks, hold them with a renewed lease, and finish them; the
// server expires lapsed leases and cancels on request. Every change is
// guarded by the task's status and holder, so a worker that lost its lease
// can no longer change the task.
type LeaseStore interface {
	// ClaimTask starts task id on workerID if it is requested: attempts+1,
	// a lease until now+lease. Anything else is ECONFLICT (the dispatch
	// is stale) or ENOTFOUND.
	ClaimTask(ctx context.Context, id, workerID string, lease time.Duration, now time.Time) (*Task, error)
	// ClaimTasks claims, in one round trip, those of ids that are
	// requested and match f; the rest are stale or not the worker's.
	ClaimTasks(ctx context.Context, ids []string, f ClaimFilter, workerID string, lease time.Duration, now time.Time) ([]*Task, error)
	// ClaimNext claims up to f.Max requested tasks that match f, oldest
	// first (the HTTP long-poll transport's queue).
	ClaimNext(ctx context.Context, f ClaimFilter, workerID string, lease time.Duration, now time.Time) ([]*Task, error)
	// RenewLease extends the lease of a started task held by workerID and
	// records its progress (when not nil). A task the worker no longer
	// holds is ECONFLICT; the worker must stop it.
	RenewLease(ctx context.Context, id, workerID string, lease time.Duration, p *Progress, now time.Time) (*Task, error)
	// FinishTask moves a started task held by workerID to c.Status
	// (finished, failed, cancelled, or requested to hand it back without
	// counting the attempt as failed).
	FinishTask(ctx context.Context, id, workerID string, c TaskChange, now time.Time) (*Task, error)
	// FinishTasks applies several outcomes of tasks held by workerID in
	// one transaction, each as FinishTask with its last log lines and
	// progress, guarded by its attempt when not 0. A refused outcome
	// changes nothing and has its error at its index in errs; err is set
	// only when nothing could be applied.
	FinishTasks(ctx context.Context, workerID string, outs []Outcome, now time.Time) (tasks []*Task, errs []error, err error)
	// ExpireLeases puts started tasks whose lease lapsed back to requested
	// (or fails them after MaxAttempts), fails started tasks past their
	// timeout, and returns the tasks it put back, to be dispatched again.
	ExpireLeases(ctx context.Context, now time.Time) (requeued []*Task, err error)
	// RequestCancel cancels a task that has not started, or flags a
	// started one for its worker to stop. A finished task is ECONFLICT.
	RequestCancel(ctx context.Context, id string, now time.Time) (*Task, error)
	// RouteTasks moves up to max created tasks, oldest first, to
	// requested and returns them (the router's batch; concurrent routers
	// never route a task twice).
	RouteTasks(ctx context.Context, max int, now time.Time) ([]*Task, error)
	// AddTaskRecords adds n to the task's record count.
	AddTaskRecords(ctx context.Context, id string, n int64) error
}

// Outcome is how one task ended on a worker, as the worker reports it.
type Outcome struct {
	TaskID string
	// Attempt is the attempt the worker ran; 0 skips the check.
	Attempt  int
	Change   TaskChange
	Logs     []string  // the last log lines, not sent before
	Progress *Progress // where the task ended, when known
}

// MaxTaskLogLines caps the lines stored per task. The line that would pass
// the cap is replaced by a marker saying the log was truncated, the task's
// LogTruncated is set, and later lines are dropped: never silently.
const MaxTaskLogLines = 10000
