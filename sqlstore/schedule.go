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

// ActiveTasks implements scanfleet.ScheduleStore.
func (db *DB) ActiveTasks(ctx context.Context) (map[scanfleet.Pool]int, error) {
	rows, err := db.query(ctx, db.read, "SELECT pool, COUNT(*) FROM tasks WHERE status IN ('created', 'requested', 'started') GROUP BY pool")
	if err != nil {
		return nil, fmt.Errorf("count active tasks: %w", err)
	}
	defer rows.Close()
	out := map[scanfleet.Pool]int{}
	for rows.Next() {
		var (
			pool string
			n    int
		)
		if err := rows.Scan(&pool, &n); err != nil {
			return nil, fmt.Errorf("count active tasks: %w", err)
		}
		out[scanfleet.Pool(pool)] = n
	}
	return out, wrap("count active tasks", rows.Err())
}

// ReleaseQueued implements scanfleet.ScheduleStore.
func (db *DB) ReleaseQueued(ctx context.Context, pool scanfleet.Pool, max int, now time.Time) ([]*scanfleet.Task, error) {
	if max <= 0 {
		return nil, nil
	}
	now = truncTime(now)
	var out []*scanfleet.Task
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		rows, err := db.query(ctx, tx, "SELECT id FROM tasks WHERE status = 'queued' AND pool = ? ORDER BY id LIMIT ?", string(pool), max)
		ids, err := scanAll(rows, err, func(r rowScanner) (string, error) {
			var id string
			return id, r.Scan(&id)
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		args := []any{micros(now), micros(now)}
		for _, id := range ids {
			args = append(args, id)
		}
		rows, err = db.query(ctx, tx, "UPDATE tasks SET status = 'requested', requested_at = ?, updated_at = ? WHERE status = 'queued' AND id IN ("+
			placeholders(len(ids))+") RETURNING "+taskColumns, args...)
		out, err = scanAll(rows, err, scanTask)
		return err
	})
	return out, wrap("release queued tasks", err)
}

// scanTaskActive is the condition of a scan's task that is not done, as
// the partial index tasks_scan_active (migration 00007) states it. Queries
// write it word for word, parameters apart, so that SQLite's planner sees
// that the index covers them.
const scanTaskActive = "scan_id <> '' AND status IN ('created', 'queued', 'requested', 'started')"

// lastEnds are two columns: when the newest finished and the newest
// failed task of a scan (the first and third parameters) in a workspace
// (the second and fourth) ended. Each is a seek in a partial index of
// migration 00007, however long the scan's history, written as ORDER BY
// … LIMIT 1 rather than MAX: PostgreSQL reads every entry for MAX when its
// statistics think there are few.
const lastEnds = "(SELECT finished_at FROM tasks WHERE scan_id = ? AND workspace = ? AND scan_id <> '' AND status = 'finished' " +
	"AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1), " +
	"(SELECT failed_at FROM tasks WHERE scan_id = ? AND workspace = ? AND scan_id <> '' AND status = 'failed' " +
	"AND failed_at IS NOT NULL ORDER BY failed_at DESC LIMIT 1)"

// runStateQuery reads one run's state: whether a task is in flight (a
// seek in tasks_scan_active), then lastEnds.
const runStateQuery = "SELECT EXISTS (SELECT 1 FROM tasks WHERE scan_id = ? AND workspace = ? AND " + scanTaskActive + "), " + lastEnds

// inFlightTask selects the oldest task of a scan (the first parameter)
// in a workspace (the second) that is not done.
const inFlightTask = "FROM tasks WHERE scan_id = ? AND workspace = ? AND " + scanTaskActive + " ORDER BY id LIMIT 1"

// ScanRunState implements scanfleet.ScheduleStore.
func (db *DB) ScanRunState(ctx context.Context, scanID, workspace string) (*scanfleet.Task, *time.Time, error) {
	t, err := scanTask(db.queryRow(ctx, db.read, "SELECT "+taskColumns+" "+inFlightTask, scanID, workspace))
	if err == nil {
		return t, nil, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("scan run state: %w", err)
	}
	var finished, failed sql.NullInt64
	err = db.queryRow(ctx, db.read, "SELECT "+lastEnds, scanID, workspace, scanID, workspace).Scan(&finished, &failed)
	if err != nil {
		return nil, nil, fmt.Errorf("scan run state: %w", err)
	}
	return nil, laterEnd(finished, failed), nil
}

// RunStates implements scanfleet.ScheduleStore with one indexed query per
// key.
func (db *DB) RunStates(ctx context.Context, keys []scanfleet.RunKey) (map[scanfleet.RunKey]scanfleet.RunState, error) {
	out := make(map[scanfleet.RunKey]scanfleet.RunState, len(keys))
	for _, k := range keys {
		if _, ok := out[k]; ok {
			continue
		}
		st, err := db.runState(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("run states: %w", err)
		}
		out[k] = st
	}
	return out, nil
}

// runState reads the state of one scan's runs in one workspace.
func (db *DB) runState(ctx context.Context, k scanfleet.RunKey) (scanfleet.RunState, error) {
	var (
		inFlight         bool
		finished, failed sql.NullInt64
	)
	err := db.queryRow(ctx, db.read, runStateQuery, k.ScanID, k.Workspace, k.ScanID, k.Workspace, k.ScanID, k.Workspace).
		Scan(&inFlight, &finished, &failed)
	if err != nil {
		return scanfleet.RunState{}, err
	}
	return scanfleet.RunState{InFlight: inFlight, LastEnd: laterEnd(finished, failed)}, nil
}

// laterEnd is the later of a run's newest finished and newest failed end,
// nil when neither is set.
func laterEnd(finished, failed sql.NullInt64) *time.Time {
	if failed.Valid && (!finished.Valid || failed.Int64 > finished.Int64) {
		finished = failed
	}
	return fromNullMicros(finished)
}

// AcquireLease implements scanfleet.ScheduleStore: one guarded upsert, so
// two replicas racing for a free lease cannot both win.
func (db *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error) {
	now = truncTime(now)
	res, err := db.exec(ctx, db.write, `INSERT INTO scheduler_leases (name, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE scheduler_leases.holder = excluded.holder OR scheduler_leases.expires_at < ?`,
		name, holder, micros(now.Add(ttl)), micros(now))
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return n > 0, nil
}

// ReleaseLease implements scanfleet.ScheduleStore.
func (db *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := db.exec(ctx, db.write, "DELETE FROM scheduler_leases WHERE name = ? AND holder = ?", name, holder)
	return wrap("release lease "+name, err)
}

// TasksEndedSince implements scanfleet.ScheduleStore.
func (db *DB) TasksEndedSince(ctx context.Context, since time.Time, afterID string, limit int) ([]*scanfleet.Task, error) {
	rows, err := db.query(ctx, db.read, "SELECT "+taskColumns+" FROM tasks WHERE (updated_at > ? OR (updated_at = ? AND id > ?)) "+
		"AND status IN ('finished', 'failed', 'cancelled') ORDER BY updated_at, id LIMIT ?", micros(since), micros(since), afterID, limit)
	list, err := scanAll(rows, err, scanTask)
	return list, wrap("tasks ended since", err)
}

// GetMark implements scanfleet.ScheduleStore; an unset mark is the zero
// time.
func (db *DB) GetMark(ctx context.Context, name string) (time.Time, error) {
	var v int64
	err := db.queryRow(ctx, db.read, "SELECT value FROM scheduler_marks WHERE name = ?", name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	} else if err != nil {
		return time.Time{}, fmt.Errorf("get mark %s: %w", name, err)
	}
	return fromMicros(v), nil
}

// SetMark implements scanfleet.ScheduleStore.
func (db *DB) SetMark(ctx context.Context, name string, t time.Time) error {
	_, err := db.exec(ctx, db.write, `INSERT INTO scheduler_marks (name, value) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, micros(truncTime(t)))
	return wrap("set mark "+name, err)
}

// PutWebhook implements scanfleet.WebhookStore.
func (db *DB) PutWebhook(ctx context.Context, h *scanfleet.Webhook) error {
	if err := h.Validate(); err != nil {
		return err
	}
	if h.UpdatedAt.IsZero() {
		h.UpdatedAt = db.now()
	}
	h.UpdatedAt = truncTime(h.UpdatedAt)
	events, _ := json.Marshal(h.Events)
	return db.inTx(ctx, func(tx *sql.Tx) error {
		ws, err := db.findWorkspace(ctx, tx, h.Workspace, "")
		if err != nil {
			return err
		}
		_, err = db.exec(ctx, tx, `INSERT INTO workspace_webhooks (workspace_id, url, secret, events, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (workspace_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, events = excluded.events,
				updated_at = excluded.updated_at`, ws.ID, h.URL, h.Secret, string(events), micros(h.UpdatedAt))
		return wrap("put webhook", err)
	})
}

// GetWebhook implements scanfleet.WebhookStore.
func (db *DB) GetWebhook(ctx context.Context, workspace string) (*scanfleet.Webhook, error) {
	h := scanfleet.Webhook{Workspace: workspace}
	var (
		events  string
		updated int64
	)
	err := db.queryRow(ctx, db.read, `SELECT h.url, h.secret, h.events, h.updated_at FROM workspace_webhooks h
		JOIN workspaces w ON w.id = h.workspace_id WHERE w.name = ?`, workspace).Scan(&h.URL, &h.Secret, &events, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := db.FindWorkspace(ctx, workspace); err != nil {
			return nil, err
		}
		return nil, scanfleet.Errorf(scanfleet.ENOTFOUND, "workspace %q has no webhook", workspace)
	} else if err != nil {
		return nil, fmt.Errorf("get webhook: %w", err)
	}
	if err := json.Unmarshal([]byte(events), &h.Events); err != nil {
		return nil, fmt.Errorf("get webhook: events: %w", err)
	}
	h.UpdatedAt = fromMicros(updated)
	return &h, nil
}

// DeleteWebhook implements scanfleet.WebhookStore.
func (db *DB) DeleteWebhook(ctx context.Context, workspace string) error {
	ws, err := db.FindWorkspace(ctx, workspace)
	if err != nil {
		return err
	}
	res, err := db.exec(ctx, db.write, "DELETE FROM workspace_webhooks WHERE workspace_id = ?", ws.ID)
	if err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return scanfleet.Errorf(scanfleet.ENOTFOUND, "workspace %q has no webhook", workspace)
	}
	return nil
}

// EnqueueDeliveries implements scanfleet.WebhookStore. A delivery whose id
// is already stored is skipped: events carry ids made from what they are
// about, so one seen twice is sent once.
func (db *DB) EnqueueDeliveries(ctx context.Context, ds []*scanfleet.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		hooks := map[string]*scanfleet.Webhook{}
		ids := map[string]string{}
		for _, d := range ds {
			h, seen := hooks[d.Workspace]
			if !seen {
				var wsID, events string
				err := db.queryRow(ctx, tx, `SELECT w.id, h.events FROM workspace_webhooks h JOIN workspaces w ON w.id = h.workspace_id
					WHERE w.name = ?`, d.Workspace).Scan(&wsID, &events)
				if err == nil {
					h = &scanfleet.Webhook{}
					_ = json.Unmarshal([]byte(events), &h.Events)
					ids[d.Workspace] = wsID
				} else if !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("enqueue deliveries: %w", err)
				}
				hooks[d.Workspace] = h
			}
			if h == nil || !h.Wants(d.Event) {
				continue
			}
			if d.ID == "" {
				d.ID = scanfleet.NewID()
			}
			if d.CreatedAt.IsZero() {
				d.CreatedAt = db.now()
			}
			d.CreatedAt = truncTime(d.CreatedAt)
			d.UpdatedAt, d.NextAt, d.Status = d.CreatedAt, d.CreatedAt, scanfleet.DeliveryPending
			_, err := db.exec(ctx, tx, `INSERT INTO webhook_deliveries (id, workspace_id, event, payload, status, attempts, next_at,
				last_code, last_error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, 0, '', ?, ?)
				ON CONFLICT (id) DO NOTHING`,
				d.ID, ids[d.Workspace], d.Event, string(d.Payload), d.Status, micros(d.NextAt), micros(d.CreatedAt), micros(d.UpdatedAt))
			if err != nil {
				return fmt.Errorf("enqueue deliveries: %w", err)
			}
		}
		return nil
	})
}

const deliveryColumns = "d.id, w.name, d.event, d.payload, d.status, d.attempts, d.next_at, d.last_code, d.last_error, d.created_at, d.updated_at"

func scanDelivery(r rowScanner) (*scanfleet.Delivery, error) {
	var (
		d                     scanfleet.Delivery
		payload               string
		next, created, update int64
	)
	if err := r.Scan(&d.ID, &d.Workspace, &d.Event, &payload, &d.Status, &d.Attempts, &next, &d.LastCode, &d.LastError, &created, &update); err != nil {
		return nil, err
	}
	d.Payload = json.RawMessage(payload)
	d.NextAt, d.CreatedAt, d.UpdatedAt = fromMicros(next), fromMicros(created), fromMicros(update)
	return &d, nil
}

// DueDeliveries implements scanfleet.WebhookStore.
func (db *DB) DueDeliveries(ctx context.Context, now time.Time, limit int) ([]*scanfleet.Delivery, error) {
	rows, err := db.query(ctx, db.read, "SELECT "+deliveryColumns+` FROM webhook_deliveries d JOIN workspaces w ON w.id = d.workspace_id
		WHERE d.status = 'pending' AND d.next_at <= ? ORDER BY d.next_at, d.id LIMIT ?`, micros(now), limit)
	list, err := scanAll(rows, err, scanDelivery)
	return list, wrap("due deliveries", err)
}

// UpdateDelivery implements scanfleet.WebhookStore.
func (db *DB) UpdateDelivery(ctx context.Context, d *scanfleet.Delivery) error {
	if d.UpdatedAt.IsZero() {
		d.UpdatedAt = db.now()
	}
	d.UpdatedAt, d.NextAt = truncTime(d.UpdatedAt), truncTime(d.NextAt)
	res, err := db.exec(ctx, db.write, `UPDATE webhook_deliveries SET status = ?, attempts = ?, next_at = ?, last_code = ?,
		last_error = ?, updated_at = ? WHERE id = ?`, d.Status, d.Attempts, micros(d.NextAt), d.LastCode,
		truncate(d.LastError, 1000), micros(d.UpdatedAt), d.ID)
	if err != nil {
		return fmt.Errorf("update delivery: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return scanfleet.Errorf(scanfleet.ENOTFOUND, "delivery %q not found", d.ID)
	}
	return nil
}

// ListDeliveries implements scanfleet.WebhookStore.
func (db *DB) ListDeliveries(ctx context.Context, workspace string, limit int) ([]*scanfleet.Delivery, error) {
	if _, err := db.FindWorkspace(ctx, workspace); err != nil {
		return nil, err
	}
	rows, err := db.query(ctx, db.read, "SELECT "+deliveryColumns+` FROM webhook_deliveries d JOIN workspaces w ON w.id = d.workspace_id
		WHERE w.name = ? ORDER BY d.id DESC LIMIT ?`, workspace, limit)
	list, err := scanAll(rows, err, scanDelivery)
	return list, wrap("list deliveries", err)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
