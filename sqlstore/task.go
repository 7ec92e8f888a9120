package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

const taskColumns = "id, scan_id, type, workspace, pool, site, status, attempts, max_attempts, worker_id, timeout_ns, input, output, error, " +
	"created_at, queued_at, requested_at, started_at, finished_at, failed_at, cancelled_at, updated_at, " +
	"lease_expires_at, cancel_requested, progress_done, progress_total, records, log_truncated"

const taskColumnCount = 28

func scanTask(r rowScanner) (*scanfleet.Task, error) {
	var (
		t                           scanfleet.Task
		timeout                     int64
		input, output               sql.NullString
		created, updated            int64
		queued, requested, started  sql.NullInt64
		finished, failed, cancelled sql.NullInt64
		lease                       sql.NullInt64
	)
	err := r.Scan(&t.ID, &t.ScanID, &t.Type, &t.Workspace, &t.Pool, &t.Site, &t.Status, &t.Attempts, &t.MaxAttempts,
		&t.WorkerID, &timeout, &input, &output, &t.Error,
		&created, &queued, &requested, &started, &finished, &failed, &cancelled, &updated,
		&lease, &t.CancelRequested, &t.Progress.Done, &t.Progress.Total, &t.Records, &t.LogTruncated)
	if err != nil {
		return nil, err
	}
	t.Timeout = scanfleet.Duration(timeout)
	if input.Valid {
		t.Input = json.RawMessage(input.String)
	}
	if output.Valid {
		t.Output = json.RawMessage(output.String)
	}
	t.CreatedAt, t.UpdatedAt = fromMicros(created), fromMicros(updated)
	t.QueuedAt, t.RequestedAt, t.StartedAt = fromNullMicros(queued), fromNullMicros(requested), fromNullMicros(started)
	t.FinishedAt, t.FailedAt, t.CancelledAt = fromNullMicros(finished), fromNullMicros(failed), fromNullMicros(cancelled)
	t.LeaseExpiresAt = fromNullMicros(lease)
	return &t, nil
}

func errTaskNotFound(id string) error {
	return scanfleet.Errorf(scanfleet.ENOTFOUND, "task %q not found", id)
}

func nullJSON(m json.RawMessage) any {
	if m == nil {
		return nil
	}
	return string(m)
}

func truncTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := truncTime(*t)
	return &v
}

// CreateTasks stores new tasks in one transaction, setting an ID, status
// (created) and times where they are zero. A task of an unknown workspace is
// EINVALID; a taken id ECONFLICT.
func (db *DB) CreateTasks(ctx context.Context, tasks []*scanfleet.Task) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error { return db.createTasks(ctx, tx, tasks) })
	if err != nil {
		return db.taskInsertError(ctx, "create tasks", tasks, err)
	}
	return nil
}

func (db *DB) createTasks(ctx context.Context, tx *sql.Tx, tasks []*scanfleet.Task) error {
	if len(tasks) == 0 {
		return nil
	}
	now := truncTime(db.now())
	names := map[string]bool{}
	args := make([]any, 0, taskColumnCount*len(tasks))
	for i, t := range tasks {
		if t.ID == "" {
			t.ID = scanfleet.NewTaskID()
		}
		if t.Status == "" {
			t.Status = scanfleet.TaskCreated
		}
		if !t.Status.Valid() {
			return scanfleet.Errorf(scanfleet.EINVALID, "tasks[%d].status: %q is not a task status", i, t.Status)
		}
		if t.Workspace == "" {
			return scanfleet.Errorf(scanfleet.EINVALID, "tasks[%d].workspace: is empty", i)
		}
		if t.CreatedAt.IsZero() {
			t.CreatedAt = now
		}
		if t.UpdatedAt.IsZero() {
			t.UpdatedAt = t.CreatedAt
		}
		t.CreatedAt, t.UpdatedAt = truncTime(t.CreatedAt), truncTime(t.UpdatedAt)
		t.QueuedAt, t.RequestedAt, t.StartedAt = truncTimePtr(t.QueuedAt), truncTimePtr(t.RequestedAt), truncTimePtr(t.StartedAt)
		t.FinishedAt, t.FailedAt, t.CancelledAt = truncTimePtr(t.FinishedAt), truncTimePtr(t.FailedAt), truncTimePtr(t.CancelledAt)
		t.LeaseExpiresAt = truncTimePtr(t.LeaseExpiresAt)
		names[t.Workspace] = true
		args = append(args, t.ID, t.ScanID, t.Type, t.Workspace, string(t.Pool), t.Site, string(t.Status),
			t.Attempts, t.MaxAttempts, t.WorkerID, int64(t.Timeout), nullJSON(t.Input), nullJSON(t.Output), t.Error,
			micros(t.CreatedAt), nullMicros(t.QueuedAt), nullMicros(t.RequestedAt), nullMicros(t.StartedAt),
			nullMicros(t.FinishedAt), nullMicros(t.FailedAt), nullMicros(t.CancelledAt), micros(t.UpdatedAt),
			nullMicros(t.LeaseExpiresAt), t.CancelRequested, t.Progress.Done, t.Progress.Total, t.Records, t.LogTruncated)
	}
	// Name an unknown workspace before the foreign key does, since a
	// multi-row insert's error cannot say which row failed.
	for name := range names {
		if _, err := db.workspaceID(ctx, tx, name, false); scanfleet.ErrorCode(err) == scanfleet.ENOTFOUND {
			return scanfleet.Errorf(scanfleet.EINVALID, "task workspace: workspace %q does not exist", name)
		} else if err != nil {
			return err
		}
	}
	return db.insertRows(ctx, tx, "INSERT INTO tasks ("+taskColumns+") VALUES ", taskColumnCount, args)
}

// taskInsertError turns a failed task insert into an application error
// where it can: a taken id names the task, a vanished workspace is
// EINVALID.
func (db *DB) taskInsertError(ctx context.Context, op string, tasks []*scanfleet.Task, err error) error {
	switch db.dialect.violation(err) {
	case UniqueViolation:
		// The transaction is gone; look up which id was taken.
		for start := 0; start < len(tasks); start += BatchSize {
			batch := tasks[start:min(start+BatchSize, len(tasks))]
			ids := make([]any, len(batch))
			for i, t := range batch {
				ids[i] = t.ID
			}
			var taken string
			if db.queryRow(ctx, db.read, "SELECT id FROM tasks WHERE id IN ("+placeholders(len(ids))+") LIMIT 1", ids...).Scan(&taken) == nil {
				return scanfleet.Errorf(scanfleet.ECONFLICT, "task %s already exists", taken)
			}
		}
		return scanfleet.Errorf(scanfleet.ECONFLICT, "tasks: an id is given twice")
	case ForeignKeyViolation:
		return scanfleet.Errorf(scanfleet.EINVALID, "task workspace: the workspace no longer exists")
	}
	return wrap(op, err)
}

// FindTask returns the task with the id, or ENOTFOUND.
func (db *DB) FindTask(ctx context.Context, id string) (*scanfleet.Task, error) {
	return db.findTask(ctx, db.read, id)
}

func (db *DB) findTask(ctx context.Context, q querier, id string) (*scanfleet.Task, error) {
	t, err := scanTask(db.queryRow(ctx, q, "SELECT "+taskColumns+" FROM tasks WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errTaskNotFound(id)
	} else if err != nil {
		return nil, fmt.Errorf("find task: %w", err)
	}
	return t, nil
}

// ListTasks returns one page of tasks, newest first: ids are UUIDv7, so
// their order is their creation order.
func (db *DB) ListTasks(ctx context.Context, f scanfleet.TaskFilter) ([]*scanfleet.Task, string, error) {
	page, err := normalizePage(f.Page)
	if err != nil {
		return nil, "", err
	}
	var (
		where []string
		args  []any
	)
	if len(f.Status) > 0 {
		for _, s := range f.Status {
			if !s.Valid() {
				_, err := scanfleet.ParseTaskStatus(string(s))
				return nil, "", err
			}
			args = append(args, string(s))
		}
		where = append(where, "status IN ("+placeholders(len(f.Status))+")")
	}
	if f.ScanID != "" {
		where = append(where, "scan_id = ?")
		args = append(args, f.ScanID)
	}
	if f.Workspace != "" {
		where = append(where, "workspace = ?")
		args = append(args, f.Workspace)
	}
	if f.WorkerID != "" {
		where = append(where, "worker_id = ?")
		args = append(args, f.WorkerID)
	}
	if f.CancelRequested {
		where = append(where, "status = 'started' AND cancel_requested = TRUE")
	}
	if !f.Since.IsZero() {
		where = append(where, "created_at >= ?")
		args = append(args, micros(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "created_at < ?")
		args = append(args, micros(f.Until))
	}
	if page.Cursor != "" {
		parts, err := decodeCursor(page.Cursor, 1)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "id < ?")
		args = append(args, parts[0])
	}
	args = append(args, page.Limit+1)
	rows, err := db.query(ctx, db.read, "SELECT "+taskColumns+" FROM tasks"+whereClause(where)+" ORDER BY id DESC LIMIT ?", args...)
	all, err := scanAll(rows, err, scanTask)
	if err != nil {
		return nil, "", fmt.Errorf("list tasks: %w", err)
	}
	out, next := pageOf(all, page.Limit, func(t *scanfleet.Task) string { return encodeCursor(t.ID) })
	return out, next, nil
}

// statusTimeColumn is the column that records when a task entered status.
func statusTimeColumn(s scanfleet.TaskStatus) string {
	switch s {
	case scanfleet.TaskQueued:
		return "queued_at"
	case scanfleet.TaskRequested:
		return "requested_at"
	case scanfleet.TaskStarted:
		return "started_at"
	case scanfleet.TaskFinished:
		return "finished_at"
	case scanfleet.TaskFailed:
		return "failed_at"
	case scanfleet.TaskCancelled:
		return "cancelled_at"
	}
	return ""
}

// TransitionTask moves the task to c.Status with one guarded UPDATE whose
// WHERE clause admits only the statuses the state machine lets move there,
// so two racing transitions cannot both win. When no row changes, the task
// is read to tell ENOTFOUND from ECONFLICT. Leaving started drops the
// task's lease; moving to started grants none, so ExpireLeases takes such
// a task back at once: workers start tasks with ClaimTask or ClaimNext.
func (db *DB) TransitionTask(ctx context.Context, id string, c scanfleet.TaskChange, now time.Time) (*scanfleet.Task, error) {
	if !c.Status.Valid() {
		_, err := scanfleet.ParseTaskStatus(string(c.Status))
		return nil, err
	}
	now = truncTime(now)
	sources := scanfleet.TransitionSources(c.Status)
	set := []string{"status = ?", "updated_at = ?"}
	args := []any{string(c.Status), micros(now)}
	if col := statusTimeColumn(c.Status); col != "" {
		set = append(set, col+" = ?")
		args = append(args, micros(now))
	}
	if c.Status != scanfleet.TaskStarted {
		set = append(set, "lease_expires_at = NULL") // a lease only holds a started task
	}
	if c.AddAttempt {
		set = append(set, "attempts = attempts + 1")
	}
	if c.WorkerID != nil {
		set = append(set, "worker_id = ?")
		args = append(args, *c.WorkerID)
	}
	set, args = setOutcome(set, args, c)
	args = append(args, id)
	for _, s := range sources {
		args = append(args, string(s))
	}
	query := "UPDATE tasks SET " + strings.Join(set, ", ") +
		" WHERE id = ? AND status IN (" + placeholders(len(sources)) + ") RETURNING " + taskColumns
	// A status read after a failed update may already allow the move (the
	// task changed in between); then the update is tried again.
	for range 3 {
		if len(sources) > 0 {
			t, err := scanTask(db.queryRow(ctx, db.write, query, args...))
			if err == nil {
				return t, nil
			} else if !errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("transition task: %w", err)
			}
		}
		var cur scanfleet.TaskStatus
		err := db.queryRow(ctx, db.write, "SELECT status FROM tasks WHERE id = ?", id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errTaskNotFound(id)
		} else if err != nil {
			return nil, fmt.Errorf("transition task: %w", err)
		}
		if !scanfleet.CanTransition(cur, c.Status) {
			return nil, scanfleet.Errorf(scanfleet.ECONFLICT, "task %s is %s; it cannot become %s", id, cur, c.Status)
		}
	}
	return nil, scanfleet.Errorf(scanfleet.ECONFLICT, "task %s is changing too often to become %s; try again", id, c.Status)
}

// maxLogLimit bounds one ListTaskLogs answer.
const (
	defaultLogLimit = 1000
	maxLogLimit     = 10000
)

// setOutcome appends to a SET clause and its arguments the output and
// error c gives, where it gives them.
func setOutcome(set []string, args []any, c scanfleet.TaskChange) ([]string, []any) {
	if c.Output != nil {
		set = append(set, "output = ?")
		args = append(args, string(c.Output))
	}
	if c.Error != nil {
		set = append(set, "error = ?")
		args = append(args, *c.Error)
	}
	return set, args
}

// AppendTaskLogs stores lines as the task's next log lines, numbered on
// from the last one, up to scanfleet.MaxTaskLogLines. The line that would
// pass the cap is replaced by truncatedLogLine and the task's
// log_truncated set; later lines are counted in log_seq but not stored.
// Bumping the task's log counter locks its row, so concurrent appends get
// distinct numbers, and exactly one of them writes the marker, in both
// engines.
func (db *DB) AppendTaskLogs(ctx context.Context, id string, lines []string, now time.Time) error {
	err := db.inTx(ctx, func(tx *sql.Tx) error { return db.appendTaskLogs(ctx, tx, id, lines, now) })
	return wrap("append task logs", err)
}

// appendTaskLogs appends lines to the task's log within tx.
func (db *DB) appendTaskLogs(ctx context.Context, tx *sql.Tx, id string, lines []string, now time.Time) error {
	n := int64(len(lines))
	var last int64
	err := db.queryRow(ctx, tx, "UPDATE tasks SET log_seq = log_seq + ?, "+
		"log_truncated = CASE WHEN log_seq + ? > ? THEN TRUE ELSE log_truncated END "+
		"WHERE id = ? RETURNING log_seq", n, n, scanfleet.MaxTaskLogLines, id).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return errTaskNotFound(id)
	} else if err != nil {
		return err
	}
	return db.insertRows(ctx, tx, "INSERT INTO task_logs (task_id, seq, ts, line) VALUES ", 4, appendLogRows(nil, id, lines, last, micros(now)))
}

// appendLogRows appends the rows (task_id, seq, ts, line) of lines whose
// last has sequence number last: within the cap, the line past it replaced
// by a marker, later ones dropped.
func appendLogRows(rows []any, id string, lines []string, last, ts int64) []any {
	const maxLines = scanfleet.MaxTaskLogLines
	first := last - int64(len(lines)) + 1
	for i, line := range lines {
		seq := first + int64(i)
		if seq > maxLines+1 {
			break
		} else if seq == maxLines+1 {
			line = truncatedLogLine
		}
		rows = append(rows, id, seq, ts, line)
	}
	return rows
}

// truncatedLogLine takes the place of the first log line past the cap, so
// that a reader of the log sees that it was cut.
var truncatedLogLine = fmt.Sprintf("[scanfleet] log truncated: this task wrote more than %d lines; later lines are not stored",
	scanfleet.MaxTaskLogLines)

// ListTaskLogs returns up to limit lines with Seq > after, in order. A limit
// of 0 means 1000; more than 10000 is EINVALID. An unknown task is
// ENOTFOUND.
func (db *DB) ListTaskLogs(ctx context.Context, id string, after int64, limit int) ([]scanfleet.TaskLog, error) {
	if limit == 0 {
		limit = defaultLogLimit
	}
	if limit < 0 || limit > maxLogLimit {
		return nil, scanfleet.Errorf(scanfleet.EINVALID, "limit: must be between 1 and %d", maxLogLimit)
	}
	rows, err := db.query(ctx, db.read, "SELECT seq, ts, line FROM task_logs WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?", id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list task logs: %w", err)
	}
	defer rows.Close()
	out := []scanfleet.TaskLog{}
	for rows.Next() {
		var (
			l  scanfleet.TaskLog
			ts int64
		)
		if err := rows.Scan(&l.Seq, &ts, &l.Line); err != nil {
			return nil, fmt.Errorf("list task logs: %w", err)
		}
		l.Time = fromMicros(ts)
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list task logs: %w", err)
	}
	if len(out) == 0 {
		if _, err := db.findTask(ctx, db.read, id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CountTasksByStatus counts tasks per status; every status is present,
// zero when no task has it.
func (db *DB) CountTasksByStatus(ctx context.Context) (map[scanfleet.TaskStatus]int64, error) {
	rows, err := db.query(ctx, db.read, "SELECT status, COUNT(*) FROM tasks GROUP BY status")
	out, err := countBy(rows, err, scanfleet.TaskStatuses)
	if err != nil {
		return nil, fmt.Errorf("count tasks: %w", err)
	}
	return out, nil
}
