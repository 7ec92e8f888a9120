package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Every change in this file is a guarded UPDATE: its WHERE clause names
// the status (and, for a worker's changes, the holder) the change needs,
// so of two racing changes exactly one matches the row. When none does,
// the task is read to say why. Statuses are written as literals so that
// the planner can use the partial indexes of migration 00003.

// maxClaim bounds how many tasks one claim takes.
const maxClaim = scanfleet.MaxClaim

// claimSet starts a requested task on a worker: one more attempt, a fresh
// lease, and the progress and cancel flag of an earlier attempt cleared.
// The error of an earlier attempt stays until the task ends, saying why
// this is a retry.
const claimSet = "status = 'started', started_at = ?, worker_id = ?, attempts = attempts + 1, lease_expires_at = ?, " +
	"cancel_requested = FALSE, progress_done = 0, progress_total = 0, updated_at = ?"

func claimArgs(workerID string, lease time.Duration, now time.Time) []any {
	return []any{micros(now), workerID, micros(now.Add(lease)), micros(now)}
}

func validateHolder(workerID string, lease time.Duration) error {
	if workerID == "" {
		return scanfleet.Errorf(scanfleet.EINVALID, "worker id: is empty")
	}
	if lease <= 0 {
		return scanfleet.Errorf(scanfleet.EINVALID, "lease: %s is not positive", lease)
	}
	return nil
}

// scanTasks reads every task of a query's result.
func scanTasks(rows *sql.Rows, err error) ([]*scanfleet.Task, error) {
	return scanAll(rows, err, scanTask)
}

// taskHolder returns the task's status and worker, or ENOTFOUND. It reads
// from the write pool, which has just seen the failed change.
func (db *DB) taskHolder(ctx context.Context, q querier, id string) (status scanfleet.TaskStatus, workerID string, attempts int, err error) {
	err = db.queryRow(ctx, q, "SELECT status, worker_id, attempts FROM tasks WHERE id = ?", id).Scan(&status, &workerID, &attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", 0, errTaskNotFound(id)
	}
	return status, workerID, attempts, err
}

// ClaimTask starts the requested task on workerID, holding it until
// now+lease. A task in any other status is ECONFLICT naming it: the
// dispatch that led here is stale.
func (db *DB) ClaimTask(ctx context.Context, id, workerID string, lease time.Duration, now time.Time) (*scanfleet.Task, error) {
	if err := validateHolder(workerID, lease); err != nil {
		return nil, err
	}
	now = truncTime(now)
	query := "UPDATE tasks SET " + claimSet + " WHERE id = ? AND status = 'requested' RETURNING " + taskColumns
	args := append(claimArgs(workerID, lease, now), id)
	// A status read after a failed claim may be requested again (the task
	// was put back in between); then the claim is tried again.
	for range 3 {
		t, err := scanTask(db.queryRow(ctx, db.write, query, args...))
		if err == nil {
			return t, nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("claim task: %w", err)
		}
		status, _, _, err := db.taskHolder(ctx, db.write, id)
		if err != nil {
			return nil, wrap("claim task", err)
		}
		if status != scanfleet.TaskRequested {
			return nil, scanfleet.Errorf(scanfleet.ECONFLICT, "task %s is %s; it cannot be claimed", id, status)
		}
	}
	return nil, scanfleet.Errorf(scanfleet.ECONFLICT, "task %s is changing too often to be claimed; try again", id)
}

// ClaimNext starts up to f.Max (at most 500) requested tasks of pool
// f.Pool, of a type in f.Types and of no site or site f.Site, on workerID,
// oldest first, in one statement. Concurrent pollers never take the same
// task: PostgreSQL locks the picked rows and skips those another poller
// holds (Dialect.SkipLocked); SQLite runs one write statement at a time.
// No types, or no matching task, is an empty list.
func (db *DB) ClaimNext(ctx context.Context, f scanfleet.ClaimFilter, workerID string, lease time.Duration, now time.Time) ([]*scanfleet.Task, error) {
	if err := validateHolder(workerID, lease); err != nil {
		return nil, err
	}
	if _, err := scanfleet.ParsePool(string(f.Pool)); err != nil {
		return nil, err
	}
	if f.Max < 1 {
		return nil, scanfleet.Errorf(scanfleet.EINVALID, "max: %d is less than 1", f.Max)
	}
	if len(f.Types) == 0 {
		return []*scanfleet.Task{}, nil
	}
	now = truncTime(now)
	args := []any{string(f.Pool), f.Site}
	for _, typ := range f.Types {
		args = append(args, typ)
	}
	args = append(args, min(f.Max, maxClaim))
	args = append(args, claimArgs(workerID, lease, now)...)
	// The pick is a MATERIALIZED CTE so that it runs once. Written as
	// "id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)", PostgreSQL may
	// plan the subquery inside a nested loop and run it again for each
	// row: every run skips the rows the previous runs locked and picks n
	// more, so one poll would take far more than n tasks.
	query := "WITH picked AS MATERIALIZED (SELECT id FROM tasks WHERE status = 'requested' AND pool = ? AND site IN ('', ?) " +
		"AND type IN (" + placeholders(len(f.Types)) + ") ORDER BY id LIMIT ?" + db.dialect.SkipLocked + ") " +
		"UPDATE tasks SET " + claimSet + " WHERE status = 'requested' AND id IN (SELECT id FROM picked)"
	out, err := db.claimed(ctx, workerID, query, args)
	if err != nil {
		return nil, fmt.Errorf("claim next: %w", err)
	}
	return out, nil
}

// claimed runs query, a claim of tasks for workerID (an UPDATE without
// RETURNING), and returns the tasks it started, in id order. Where reads
// have a pool of their own (SQLite), the claim returns only ids and the
// rows are read whole from the read pool: the one writer is the
// bottleneck of a busy server, and reading every column of the rows it
// changed would hold it about as long again. The claim is committed by
// then, so the read is not cut by ctx, and tasks it cannot read are handed
// back rather than left to a worker that never hears of them.
func (db *DB) claimed(ctx context.Context, workerID, query string, args []any) ([]*scanfleet.Task, error) {
	if db.read == db.write {
		out, err := scanTasks(db.query(ctx, db.write, query+" RETURNING "+taskColumns, args...))
		// RETURNING has no order.
		slices.SortFunc(out, func(a, b *scanfleet.Task) int { return strings.Compare(a.ID, b.ID) })
		return out, err
	}
	rows, err := db.query(ctx, db.write, query+" RETURNING id", args...)
	ids, err := scanAll(rows, err, func(r rowScanner) (any, error) {
		var id string
		return id, r.Scan(&id)
	})
	if err != nil || len(ids) == 0 {
		return []*scanfleet.Task{}, err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	out, err := scanTasks(db.query(rctx, db.read, "SELECT "+taskColumns+" FROM tasks WHERE id IN ("+placeholders(len(ids))+") ORDER BY id", ids...))
	if err == nil && len(out) != len(ids) {
		err = fmt.Errorf("%d of %d claimed tasks are gone", len(ids)-len(out), len(ids))
	}
	if err != nil {
		msg := "handed back: the claimed task could not be read"
		back := make([]scanfleet.Outcome, len(ids))
		for i, id := range ids {
			back[i] = scanfleet.Outcome{TaskID: id.(string), Change: scanfleet.TaskChange{Status: scanfleet.TaskRequested, Error: &msg}}
		}
		if _, _, herr := db.FinishTasks(rctx, workerID, back, db.now()); herr != nil {
			err = errors.Join(err, fmt.Errorf("hand back: %w", herr))
		}
		return nil, fmt.Errorf("read claimed tasks: %w", err)
	}
	return out, nil
}

// leaseLost explains why a worker's change to the task matched no row:
// ENOTFOUND, or ECONFLICT saying the worker no longer holds it.
func (db *DB) leaseLost(ctx context.Context, q querier, op, id, workerID string, attempt int) error {
	status, holder, attempts, err := db.taskHolder(ctx, q, id)
	switch {
	case err != nil:
		return wrap(op, err)
	case status != scanfleet.TaskStarted:
		return scanfleet.Errorf(scanfleet.ECONFLICT, "task %s is %s; worker %s no longer holds it", id, status, workerID)
	case holder != workerID:
		return scanfleet.Errorf(scanfleet.ECONFLICT, "task %s is held by another worker; worker %s lost its lease", id, workerID)
	case attempt != 0 && attempt != attempts:
		return scanfleet.Errorf(scanfleet.ECONFLICT, "attempt %d of task %s is over; the task is on attempt %d", attempt, id, attempts)
	}
	// Put back and claimed again by the same worker in between.
	return scanfleet.Errorf(scanfleet.ECONFLICT, "task %s changed while worker %s held it; try again", id, workerID)
}

// RenewLease extends the lease of the started task held by workerID to
// now+lease and records p when it is not nil. A lease that lapsed but was
// not yet expired by ExpireLeases is renewed: nobody else took the task.
// The task is returned so that the worker sees CancelRequested.
func (db *DB) RenewLease(ctx context.Context, id, workerID string, lease time.Duration, p *scanfleet.Progress, now time.Time) (*scanfleet.Task, error) {
	if err := validateHolder(workerID, lease); err != nil {
		return nil, err
	}
	now = truncTime(now)
	set := "lease_expires_at = ?, updated_at = ?"
	args := []any{micros(now.Add(lease)), micros(now)}
	if p != nil {
		if p.Done < 0 || p.Total < 0 {
			return nil, scanfleet.Errorf(scanfleet.EINVALID, "progress: done %d and total %d must not be negative", p.Done, p.Total)
		}
		set += ", progress_done = ?, progress_total = ?"
		args = append(args, p.Done, p.Total)
	}
	args = append(args, id, workerID)
	t, err := scanTask(db.queryRow(ctx, db.write,
		"UPDATE tasks SET "+set+" WHERE id = ? AND status = 'started' AND worker_id = ? RETURNING "+taskColumns, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, db.leaseLost(ctx, db.write, "renew lease", id, workerID, 0)
	} else if err != nil {
		return nil, fmt.Errorf("renew lease: %w", err)
	}
	return t, nil
}

// FinishTask moves the started task held by workerID to c.Status:
// finished, failed, cancelled, or requested to hand it back. It sets the
// status's time, c.Output and c.Error when given (a finished task without
// c.Error has its error cleared), and drops the lease. A task handed back
// loses its worker and keeps its attempt count; if its cancel was
// requested it ends cancelled instead, as its user asked. c.WorkerID and
// c.AddAttempt are ignored: a worker cannot pass its task on.
func (db *DB) FinishTask(ctx context.Context, id, workerID string, c scanfleet.TaskChange, now time.Time) (*scanfleet.Task, error) {
	_, errs, err := db.FinishTasks(ctx, workerID, []scanfleet.Outcome{{TaskID: id, Change: c}}, now)
	if err != nil {
		return nil, err
	}
	if errs[0] != nil {
		return nil, errs[0]
	}
	return db.FindTask(ctx, id)
}

// FinishTasks applies, in one transaction, the outcomes of tasks held by
// workerID: each as FinishTask, guarded by its attempt when given, with its
// last progress and log lines. An outcome the store refuses (the lease was
// lost, the attempt is over, a bad status) changes nothing and has its
// error in errs; the others are applied all the same. The tasks returned
// carry their id, status, pool, attempts and worker: what the caller
// needs, without reading each row whole.
//
// Outcomes that change their rows alike (a batch of short tasks that all
// finished, say) are one UPDATE over their ids: statements, not rows, are
// most of the cost of small changes on SQLite. A hand-back is an UPDATE of
// its own. The log lines of all of them go in multi-row INSERTs.
func (db *DB) FinishTasks(ctx context.Context, workerID string, outs []scanfleet.Outcome, now time.Time) ([]*scanfleet.Task, []error, error) {
	if workerID == "" {
		return nil, nil, scanfleet.Errorf(scanfleet.EINVALID, "worker id: is empty")
	}
	now = truncTime(now)
	tasks := make([]*scanfleet.Task, len(outs))
	errs := make([]error, len(outs))
	// In task id order, as other multi-row updates lock rows, so that two
	// transactions on PostgreSQL never wait for each other.
	order := make([]int, 0, len(outs))
	seen := make(map[string]bool, len(outs))
	for i, o := range outs {
		if errs[i] = validOutcome(o); errs[i] != nil {
			continue
		}
		if seen[o.TaskID] {
			// The first ended the task; this one finds it ended.
			errs[i] = scanfleet.Errorf(scanfleet.ECONFLICT, "task %s: more than one outcome in one batch; the first was applied", o.TaskID)
			continue
		}
		seen[o.TaskID] = true
		order = append(order, i)
	}
	sort.SliceStable(order, func(a, b int) bool { return outs[order[a]].TaskID < outs[order[b]].TaskID })
	// Outcomes alike: the same change (columns and values) and attempt.
	type shape struct {
		set, args string
		attempt   int
	}
	var (
		groups []*alike
		byKey  = map[shape]*alike{}
		alone  []int // hand-backs
	)
	for _, i := range order {
		o := outs[i]
		if o.Change.Status == scanfleet.TaskRequested {
			alone = append(alone, i)
			continue
		}
		set, args := finishSet(o, o.Change.Status, now)
		k := shape{set: set, args: fmt.Sprint(args...), attempt: o.Attempt}
		g := byKey[k]
		if g == nil {
			g = &alike{set: set, args: args, attempt: o.Attempt}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		seqs := make([]int64, len(outs)) // each task's last log line
		for _, g := range groups {
			if err := db.finishAlike(ctx, tx, workerID, outs, g, tasks, seqs, errs); err != nil {
				return err
			}
		}
		for _, i := range alone {
			t, last, err := db.handBack(ctx, tx, workerID, outs[i], now)
			if err != nil && scanfleet.ErrorCode(err) == scanfleet.EINTERNAL {
				return err
			}
			tasks[i], seqs[i], errs[i] = t, last, err
		}
		var logs []any
		for _, i := range order {
			if errs[i] == nil {
				logs = appendLogRows(logs, outs[i].TaskID, outs[i].Logs, seqs[i], micros(now))
			}
		}
		return db.insertRows(ctx, tx, "INSERT INTO task_logs (task_id, seq, ts, line) VALUES ", 4, logs)
	})
	if err != nil {
		return nil, nil, wrap("finish tasks", err)
	}
	return tasks, errs, nil
}

// validOutcome checks what an outcome asks for before the store is
// touched.
func validOutcome(o scanfleet.Outcome) error {
	c := o.Change
	if !c.Status.Valid() {
		_, err := scanfleet.ParseTaskStatus(string(c.Status))
		return err
	}
	if !scanfleet.CanTransition(scanfleet.TaskStarted, c.Status) {
		return scanfleet.Errorf(scanfleet.EINVALID, "status: a started task cannot become %s", c.Status)
	}
	if p := o.Progress; p != nil && (p.Done < 0 || p.Total < 0) {
		return scanfleet.Errorf(scanfleet.EINVALID, "progress: done %d and total %d must not be negative", p.Done, p.Total)
	}
	return nil
}

// finishColumns are what FinishTasks reads back of a finished task.
const finishColumns = "id, status, pool, attempts, worker_id, log_seq"

// finishSet is the SET clause, and its arguments, that moves a started
// task to status to with o's output, error, progress and log lines: it
// sets the status's time and drops the lease. A hand-back (to requested)
// drops the worker too and gives the attempt back: it is not a failed
// attempt and must not use up the task's retries. A finished task
// without an error has its error cleared.
func finishSet(o scanfleet.Outcome, to scanfleet.TaskStatus, now time.Time) (string, []any) {
	c := o.Change
	set := []string{"status = ?", statusTimeColumn(to) + " = ?", "updated_at = ?", "lease_expires_at = NULL"}
	args := []any{string(to), micros(now), micros(now)}
	if to == scanfleet.TaskRequested {
		set = append(set, "worker_id = ''", "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END")
	}
	set, args = setOutcome(set, args, c)
	if c.Error == nil && to == scanfleet.TaskFinished {
		set = append(set, "error = ''")
	}
	if o.Progress != nil {
		set = append(set, "progress_done = ?", "progress_total = ?")
		args = append(args, o.Progress.Done, o.Progress.Total)
	}
	if n := int64(len(o.Logs)); n > 0 {
		set = append(set, "log_seq = log_seq + ?", "log_truncated = CASE WHEN log_seq + ? > ? THEN TRUE ELSE log_truncated END")
		args = append(args, n, n, scanfleet.MaxTaskLogLines)
	}
	return strings.Join(set, ", "), args
}

// finishGuard is the WHERE clause every change of a worker's task needs:
// the task is started, on that worker and, when given, on that attempt.
func finishGuard(workerID string, attempt int) (string, []any) {
	if attempt != 0 {
		return "status = 'started' AND worker_id = ? AND attempts = ?", []any{workerID, attempt}
	}
	return "status = 'started' AND worker_id = ?", []any{workerID}
}

// alike is outcomes that change their rows alike: the same SET clause
// and arguments (finishSet), and the same attempt.
type alike struct {
	set     string
	args    []any
	attempt int
	idx     []int // the outcomes' indexes
}

// finishAlike applies the outcomes of g in one UPDATE (or one per
// maxClaim of them), and sets their tasks, last log sequence numbers and
// errors at the same indexes.
func (db *DB) finishAlike(ctx context.Context, tx *sql.Tx, workerID string, outs []scanfleet.Outcome, g *alike,
	tasks []*scanfleet.Task, seqs []int64, errs []error) error {
	guard, guardArgs := finishGuard(workerID, g.attempt)
	for part := range slices.Chunk(g.idx, maxClaim) {
		args := append(append([]any{}, g.args...), guardArgs...)
		for _, i := range part {
			args = append(args, outs[i].TaskID)
		}
		rows, err := db.query(ctx, tx, "UPDATE tasks SET "+g.set+" WHERE "+guard+" AND id IN ("+placeholders(len(part))+") RETURNING "+finishColumns, args...)
		type done struct {
			t   *scanfleet.Task
			seq int64
		}
		got := map[string]done{}
		_, err = scanAll(rows, err, func(r rowScanner) (any, error) {
			t, seq, err := scanFinished(r)
			if err == nil {
				got[t.ID] = done{t, seq}
			}
			return nil, err
		})
		if err != nil {
			return fmt.Errorf("finish task: %w", err)
		}
		for _, i := range part {
			if d, ok := got[outs[i].TaskID]; ok {
				tasks[i], seqs[i] = d.t, d.seq
			} else if errs[i] = db.leaseLost(ctx, tx, "finish task", outs[i].TaskID, workerID, outs[i].Attempt); scanfleet.ErrorCode(errs[i]) == scanfleet.EINTERNAL {
				return errs[i]
			}
		}
	}
	return nil
}

// scanFinished reads a row of finishColumns: the task as FinishTasks
// returns it, and its last log sequence number.
func scanFinished(r rowScanner) (*scanfleet.Task, int64, error) {
	var (
		t      scanfleet.Task
		status string
		pool   string
		seq    int64
	)
	err := r.Scan(&t.ID, &status, &pool, &t.Attempts, &t.WorkerID, &seq)
	t.Status, t.Pool = scanfleet.TaskStatus(status), scanfleet.Pool(pool)
	return &t, seq, err
}

// handBack gives a task back to its pool, or ends it cancelled if its
// cancel was requested meanwhile, as its user asked, and returns it with
// its last log sequence number.
func (db *DB) handBack(ctx context.Context, tx *sql.Tx, workerID string, o scanfleet.Outcome, now time.Time) (*scanfleet.Task, int64, error) {
	finish := func(to scanfleet.TaskStatus, cancelRequested string) (*scanfleet.Task, int64, error) {
		set, args := finishSet(o, to, now)
		guard, guardArgs := finishGuard(workerID, o.Attempt)
		args = append(append(args, guardArgs...), o.TaskID)
		return scanFinished(db.queryRow(ctx, tx, "UPDATE tasks SET "+set+" WHERE "+guard+" AND id = ? AND cancel_requested = "+cancelRequested+
			" RETURNING "+finishColumns, args...))
	}
	// cancel_requested only ever turns on while the task is started, so
	// when the hand-back misses, a cancel request is the one thing besides
	// a lost lease that can be in the way.
	t, last, err := finish(scanfleet.TaskRequested, "FALSE")
	if errors.Is(err, sql.ErrNoRows) {
		t, last, err = finish(scanfleet.TaskCancelled, "TRUE")
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, db.leaseLost(ctx, tx, "finish task", o.TaskID, workerID, o.Attempt)
	} else if err != nil {
		return nil, 0, fmt.Errorf("finish task: %w", err)
	}
	return t, last, nil
}

// ExpireLeases ends, in one transaction, every started task whose lease
// lapsed before now (a started task without a lease counts as lapsed: it
// was started outside ClaimTask, or before leases existed) or that has run
// longer than its timeout (none when zero):
//
//   - a task whose cancel was requested ends cancelled, as asked;
//   - a task past its timeout fails: "timeout: ran longer than 10m0s";
//   - a lapsed task with attempts left goes back to requested without a
//     worker, and is returned for dispatch; one without fails. A task
//     allows max(MaxAttempts, 1) attempts.
//
// Under PostgreSQL the selected rows are locked, so servers sweeping at
// once end each task once; a worker's renewal waits for the sweep and
// then finds the task gone.
func (db *DB) ExpireLeases(ctx context.Context, now time.Time) ([]*scanfleet.Task, error) {
	now = truncTime(now)
	nowUS := micros(now)
	// Most sweeps find nothing to end: look first, from the read pool,
	// and take the writer only when there is something.
	var one int
	if err := db.queryRow(ctx, db.read, "SELECT 1 "+lapsedTasks+" LIMIT 1", nowUS, nowUS).Scan(&one); errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("expire leases: %w", err)
	}
	var requeued []*scanfleet.Task
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		lapsed, err := scanTasks(db.query(ctx, tx, "SELECT "+taskColumns+" "+lapsedTasks+" ORDER BY id"+db.dialect.RowLock, nowUS, nowUS))
		if err != nil {
			return err
		}
		for _, t := range lapsed {
			to, msg := expiry(t, nowUS)
			set := "status = ?, " + statusTimeColumn(to) + " = ?, updated_at = ?, lease_expires_at = NULL"
			args := []any{string(to), nowUS, nowUS}
			if msg != "" {
				set += ", error = ?"
				args = append(args, msg)
			}
			if to == scanfleet.TaskRequested {
				set += ", worker_id = ''"
			}
			args = append(args, t.ID)
			got, err := scanTask(db.queryRow(ctx, tx, "UPDATE tasks SET "+set+" WHERE id = ? AND status = 'started' RETURNING "+taskColumns, args...))
			if err != nil {
				return err
			}
			if to == scanfleet.TaskRequested {
				requeued = append(requeued, got)
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrap("expire leases", err)
	}
	return requeued, nil
}

// lapsedTasks selects the started tasks whose lease lapsed before now
// (both parameters are now in microseconds) or that ran past their
// timeout.
const lapsedTasks = "FROM tasks WHERE status = 'started' AND " +
	"(lease_expires_at IS NULL OR lease_expires_at < ? OR (timeout_ns > 0 AND started_at < ? - timeout_ns / 1000))"

// expiry says what becomes of a started task that ExpireLeases selected,
// and the error to store ("" keeps the task's own).
func expiry(t *scanfleet.Task, nowUS int64) (scanfleet.TaskStatus, string) {
	// The same arithmetic as the query's, so both agree on the boundary.
	timedOut := t.Timeout > 0 && t.StartedAt != nil && micros(*t.StartedAt) < nowUS-int64(t.Timeout)/1000
	switch {
	case t.CancelRequested:
		return scanfleet.TaskCancelled, ""
	case timedOut:
		return scanfleet.TaskFailed, fmt.Sprintf("timeout: ran longer than %s", t.Timeout)
	}
	limit := max(t.MaxAttempts, 1)
	if t.Attempts < limit {
		return scanfleet.TaskRequested, fmt.Sprintf("lease lapsed on worker %s (attempt %d of %d)", t.WorkerID, t.Attempts, limit)
	}
	n := max(t.Attempts, limit)
	return scanfleet.TaskFailed, fmt.Sprintf("lease lapsed on worker %s; gave up after %d %s", t.WorkerID, n, plural(n, "attempt", "attempts"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// RequestCancel cancels a task that has not started (created, queued or
// requested) at once, and flags a started one for its worker, which stops
// it and reports it cancelled; asking again is harmless. A task that has
// ended is ECONFLICT.
func (db *DB) RequestCancel(ctx context.Context, id string, now time.Time) (*scanfleet.Task, error) {
	now = truncTime(now)
	var waiting []any // the statuses cancelled at once
	for _, s := range scanfleet.TransitionSources(scanfleet.TaskCancelled) {
		if s != scanfleet.TaskStarted {
			waiting = append(waiting, string(s))
		}
	}
	cancel := "UPDATE tasks SET status = 'cancelled', cancelled_at = ?, updated_at = ? WHERE id = ? AND status IN (" +
		placeholders(len(waiting)) + ") RETURNING " + taskColumns
	cancelArgs := append([]any{micros(now), micros(now), id}, waiting...)
	flag := "UPDATE tasks SET cancel_requested = TRUE, updated_at = ? WHERE id = ? AND status = 'started' RETURNING " + taskColumns
	// The task may move between the statements (requested → started);
	// then they are tried again.
	for range 3 {
		for _, q := range []struct {
			query string
			args  []any
		}{{cancel, cancelArgs}, {flag, []any{micros(now), id}}} {
			t, err := scanTask(db.queryRow(ctx, db.write, q.query, q.args...))
			if err == nil {
				return t, nil
			} else if !errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("cancel task: %w", err)
			}
		}
		status, _, _, err := db.taskHolder(ctx, db.write, id)
		if err != nil {
			return nil, wrap("cancel task", err)
		}
		if status.Terminal() {
			return nil, scanfleet.Errorf(scanfleet.ECONFLICT, "task %s is %s; it cannot be cancelled", id, status)
		}
	}
	return nil, scanfleet.Errorf(scanfleet.ECONFLICT, "task %s is changing too often to be cancelled; try again", id)
}

// AddTaskRecords adds n to the task's record count. Like log lines, it
// does not change the task's updated_at.
func (db *DB) AddTaskRecords(ctx context.Context, id string, n int64) error {
	if n < 0 {
		return scanfleet.Errorf(scanfleet.EINVALID, "records: %d is negative", n)
	}
	res, err := db.exec(ctx, db.write, "UPDATE tasks SET records = records + ? WHERE id = ?", n, id)
	if err != nil {
		return fmt.Errorf("add task records: %w", err)
	}
	if k, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("add task records: %w", err)
	} else if k == 0 {
		return errTaskNotFound(id)
	}
	return nil
}

// RouteTasks moves up to max created tasks, oldest first, to requested in
// one statement and returns them: the router's batch.
func (db *DB) RouteTasks(ctx context.Context, max int, now time.Time) ([]*scanfleet.Task, error) {
	if max < 1 {
		return nil, scanfleet.Errorf(scanfleet.EINVALID, "max: %d is not positive", max)
	}
	now = truncTime(now)
	query := "WITH picked AS MATERIALIZED (SELECT id FROM tasks WHERE status = 'created' ORDER BY id LIMIT ?" + db.dialect.SkipLocked + ") " +
		"UPDATE tasks SET status = 'requested', requested_at = ?, updated_at = ? " +
		"WHERE status = 'created' AND id IN (SELECT id FROM picked) RETURNING " + taskColumns
	out, err := scanTasks(db.query(ctx, db.write, query, min(max, maxClaim), micros(now), micros(now)))
	if err != nil {
		return nil, fmt.Errorf("route tasks: %w", err)
	}
	slices.SortFunc(out, func(a, b *scanfleet.Task) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// ClaimTasks starts those of the given tasks that are requested and match
// f (pool, site, types) on workerID, in one statement, and returns them; the
// others are stale or not this worker's to run.
func (db *DB) ClaimTasks(ctx context.Context, ids []string, f scanfleet.ClaimFilter, workerID string, lease time.Duration, now time.Time) ([]*scanfleet.Task, error) {
	if err := validateHolder(workerID, lease); err != nil {
		return nil, err
	}
	if len(ids) == 0 || len(f.Types) == 0 {
		return []*scanfleet.Task{}, nil
	}
	if len(ids) > maxClaim {
		return nil, scanfleet.Errorf(scanfleet.EINVALID, "ids: more than %d", maxClaim)
	}
	now = truncTime(now)
	args := claimArgs(workerID, lease, now)
	for _, id := range ids {
		args = append(args, id)
	}
	args = append(args, string(f.Pool), f.Site)
	for _, typ := range f.Types {
		args = append(args, typ)
	}
	query := "UPDATE tasks SET " + claimSet + " WHERE id IN (" + placeholders(len(ids)) + ") AND status = 'requested' " +
		"AND pool = ? AND site IN ('', ?) AND type IN (" + placeholders(len(f.Types)) + ")"
	out, err := db.claimed(ctx, workerID, query, args)
	if err != nil {
		return nil, fmt.Errorf("claim tasks: %w", err)
	}
	return out, nil
}
