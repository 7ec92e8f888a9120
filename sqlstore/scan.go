package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/scanfleet/scanfleet"
)

const scanColumns = "id, name, type, args, frequency_ns, cron, timeout_ns, site, single_run, enabled, manual_run_pending, last_run_at, created_at, updated_at, chunk_size"

func scanScan(r rowScanner) (*scanfleet.Scan, error) {
	var (
		s                  scanfleet.Scan
		args               string
		frequency, timeout int64
		lastRun            sql.NullInt64
		created, updated   int64
	)
	err := r.Scan(&s.ID, &s.Name, &s.Type, &args, &frequency, &s.Cron, &timeout, &s.Site,
		&s.SingleRun, &s.Enabled, &s.ManualRunPending, &lastRun, &created, &updated, &s.ChunkSize)
	if err != nil {
		return nil, err
	}
	if s.Args, err = decodeObject(args); err != nil {
		return nil, fmt.Errorf("scan %s: decode args: %w", s.ID, err)
	}
	s.Frequency, s.Timeout = scanfleet.Duration(frequency), scanfleet.Duration(timeout)
	s.LastRunAt = fromNullMicros(lastRun)
	s.CreatedAt, s.UpdatedAt = fromMicros(created), fromMicros(updated)
	s.Workspaces = []string{}
	return &s, nil
}

func errScanNotFound(id string) error {
	return scanfleet.Errorf(scanfleet.ENOTFOUND, "scan %q not found", id)
}

// CreateScan stores a validated scan, setting its ID and times when they
// are zero. An unknown workspace is EINVALID and a taken name ECONFLICT.
func (db *DB) CreateScan(ctx context.Context, s *scanfleet.Scan) error {
	if s.ID == "" {
		s.ID = scanfleet.NewID()
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = db.now()
	}
	if s.UpdatedAt.IsZero() {
		s.UpdatedAt = s.CreatedAt
	}
	s.CreatedAt, s.UpdatedAt = truncTime(s.CreatedAt), truncTime(s.UpdatedAt)
	if s.LastRunAt != nil {
		t := truncTime(*s.LastRunAt)
		s.LastRunAt = &t
	}
	args, err := encodeObject(s.Args)
	if err != nil {
		return scanfleet.Errorf(scanfleet.EINVALID, "args: %v", err)
	}
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		_, err := db.exec(ctx, tx, "INSERT INTO scans ("+scanColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			s.ID, s.Name, s.Type, args, int64(s.Frequency), s.Cron, int64(s.Timeout), s.Site,
			s.SingleRun, s.Enabled, s.ManualRunPending, nullMicros(s.LastRunAt), micros(s.CreatedAt), micros(s.UpdatedAt), s.ChunkSize)
		if db.dialect.violation(err) == UniqueViolation {
			return scanfleet.Errorf(scanfleet.ECONFLICT, "scan %q already exists", s.Name)
		} else if err != nil {
			return err
		}
		return db.linkScanWorkspaces(ctx, tx, s.ID, s.Workspaces)
	})
	return wrap("create scan", err)
}

// linkScanWorkspaces replaces the scan's workspace links; an unknown
// workspace is EINVALID.
func (db *DB) linkScanWorkspaces(ctx context.Context, tx *sql.Tx, scanID string, names []string) error {
	if _, err := db.exec(ctx, tx, "DELETE FROM scan_workspaces WHERE scan_id = ?", scanID); err != nil {
		return err
	}
	args := make([]any, 0, 3*len(names))
	seen := make(map[string]bool, len(names))
	for i, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		id, err := db.workspaceID(ctx, tx, name, false)
		if scanfleet.ErrorCode(err) == scanfleet.ENOTFOUND {
			return scanfleet.Errorf(scanfleet.EINVALID, "workspaces[%d]: workspace %q does not exist", i, name)
		} else if err != nil {
			return err
		}
		args = append(args, scanID, id, i)
	}
	err := db.insertRows(ctx, tx, "INSERT INTO scan_workspaces (scan_id, workspace_id, ord) VALUES ", 3, args)
	if db.dialect.violation(err) == ForeignKeyViolation {
		// A workspace was deleted between the lookup and the insert.
		return scanfleet.Errorf(scanfleet.EINVALID, "workspaces: a workspace of the scan no longer exists")
	}
	return err
}

// FindScan returns the scan with the id, or ENOTFOUND.
func (db *DB) FindScan(ctx context.Context, id string) (*scanfleet.Scan, error) {
	s, err := scanScan(db.queryRow(ctx, db.read, "SELECT "+scanColumns+" FROM scans WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errScanNotFound(id)
	} else if err != nil {
		return nil, fmt.Errorf("find scan: %w", err)
	}
	if err := db.loadScanWorkspaces(ctx, db.read, []*scanfleet.Scan{s}); err != nil {
		return nil, fmt.Errorf("find scan: %w", err)
	}
	return s, nil
}

// loadScanWorkspaces fills in the workspace names of scans.
func (db *DB) loadScanWorkspaces(ctx context.Context, q querier, scans []*scanfleet.Scan) error {
	if len(scans) == 0 {
		return nil
	}
	byID := make(map[string]*scanfleet.Scan, len(scans))
	args := make([]any, 0, len(scans))
	for _, s := range scans {
		byID[s.ID] = s
		args = append(args, s.ID)
	}
	rows, err := db.query(ctx, q, `SELECT sw.scan_id, w.name FROM scan_workspaces sw
		JOIN workspaces w ON w.id = sw.workspace_id
		WHERE sw.scan_id IN (`+placeholders(len(args))+`)
		ORDER BY sw.scan_id, sw.ord`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var scanID, name string
		if err := rows.Scan(&scanID, &name); err != nil {
			return err
		}
		if s := byID[scanID]; s != nil {
			s.Workspaces = append(s.Workspaces, name)
		}
	}
	return rows.Err()
}

// ListScans returns one page of scans, oldest first.
func (db *DB) ListScans(ctx context.Context, f scanfleet.ScanFilter) ([]*scanfleet.Scan, string, error) {
	page, err := normalizePage(f.Page)
	if err != nil {
		return nil, "", err
	}
	var (
		where []string
		args  []any
	)
	if f.Workspace != "" {
		where = append(where, `EXISTS (SELECT 1 FROM scan_workspaces sw JOIN workspaces w ON w.id = sw.workspace_id
			WHERE sw.scan_id = scans.id AND w.name = ?)`)
		args = append(args, f.Workspace)
	}
	if f.Type != "" {
		where = append(where, "type = ?")
		args = append(args, f.Type)
	}
	if f.Enabled != nil {
		where = append(where, "enabled = ?")
		args = append(args, *f.Enabled)
	}
	if page.Cursor != "" {
		us, id, err := decodeTimeCursor(page.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "(created_at > ? OR (created_at = ? AND id > ?))")
		args = append(args, us, us, id)
	}
	args = append(args, page.Limit+1)
	rows, err := db.query(ctx, db.read, "SELECT "+scanColumns+" FROM scans"+whereClause(where)+" ORDER BY created_at, id LIMIT ?", args...)
	all, err := scanAll(rows, err, scanScan)
	if err != nil {
		return nil, "", fmt.Errorf("list scans: %w", err)
	}
	out, next := pageOf(all, page.Limit, func(s *scanfleet.Scan) string { return encodeTimeCursor(micros(s.CreatedAt), s.ID) })
	if err := db.loadScanWorkspaces(ctx, db.read, out); err != nil {
		return nil, "", fmt.Errorf("list scans: %w", err)
	}
	return out, next, nil
}

// UpdateScan replaces the scan's definition with s (already validated): its
// name, type, arguments, workspaces, schedule, timeout, site and flags. The
// run marker (last_run_at) and created_at stay as stored, so that an edit
// racing the scheduler cannot undo a run; s is refreshed from the store.
func (db *DB) UpdateScan(ctx context.Context, s *scanfleet.Scan) error {
	args, err := encodeObject(s.Args)
	if err != nil {
		return scanfleet.Errorf(scanfleet.EINVALID, "args: %v", err)
	}
	now := truncTime(db.now())
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := db.exec(ctx, tx, `UPDATE scans SET name = ?, type = ?, args = ?, frequency_ns = ?, cron = ?,
			timeout_ns = ?, site = ?, single_run = ?, enabled = ?, manual_run_pending = ?, chunk_size = ?, updated_at = ?
			WHERE id = ?`,
			s.Name, s.Type, args, int64(s.Frequency), s.Cron, int64(s.Timeout), s.Site,
			s.SingleRun, s.Enabled, s.ManualRunPending, s.ChunkSize, micros(now), s.ID)
		if db.dialect.violation(err) == UniqueViolation {
			return scanfleet.Errorf(scanfleet.ECONFLICT, "scan %q already exists", s.Name)
		} else if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errScanNotFound(s.ID)
		}
		if err := db.linkScanWorkspaces(ctx, tx, s.ID, s.Workspaces); err != nil {
			return err
		}
		stored, err := scanScan(db.queryRow(ctx, tx, "SELECT "+scanColumns+" FROM scans WHERE id = ?", s.ID))
		if err != nil {
			return err
		}
		if err := db.loadScanWorkspaces(ctx, tx, []*scanfleet.Scan{stored}); err != nil {
			return err
		}
		*s = *stored
		return nil
	})
	return wrap("update scan", err)
}

// DeleteScan removes the scan and its workspace links, and cancels its
// tasks that are not done: those not started end cancelled at once; started
// ones are flagged for their workers to stop and returned, so that the
// caller can tell the workers. Done tasks stay, with their scan_id as it
// was. It touches no other scan's tasks.
func (db *DB) DeleteScan(ctx context.Context, id string, now time.Time) ([]*scanfleet.Task, error) {
	now = truncTime(now)
	var started []*scanfleet.Task
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := db.exec(ctx, tx, "DELETE FROM scans WHERE id = ?", id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errScanNotFound(id)
		}
		if _, err := db.exec(ctx, tx, `UPDATE tasks SET status = 'cancelled', cancelled_at = ?, updated_at = ?,
			error = 'cancelled: its scan was deleted' WHERE scan_id = ? AND status IN ('created', 'queued', 'requested')`,
			micros(now), micros(now), id); err != nil {
			return err
		}
		rows, err := db.query(ctx, tx, "UPDATE tasks SET cancel_requested = TRUE, updated_at = ? WHERE scan_id = ? AND status = 'started' RETURNING "+taskColumns,
			micros(now), id)
		started, err = scanAll(rows, err, scanTask)
		return err
	})
	if err != nil {
		return nil, wrap("delete scan", err)
	}
	return started, nil
}

// CreateScanTasks stores the tasks of one run of the scan and marks the run
// on the scan (last_run_at = now, manual_run_pending cleared, a single-run
// scan disabled) in one transaction.
func (db *DB) CreateScanTasks(ctx context.Context, scanID string, tasks []*scanfleet.Task, now time.Time) error {
	now = truncTime(now)
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		// Lock the scan's row (PostgreSQL; SQLite has one writer), so that
		// two replicas launching the same scan at once cannot both pass
		// the check below.
		var locked string
		if err := db.queryRow(ctx, tx, "SELECT id FROM scans WHERE id = ?"+db.dialect.RowLock, scanID).Scan(&locked); errors.Is(err, sql.ErrNoRows) {
			return errScanNotFound(scanID)
		} else if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, t := range tasks {
			if seen[t.Workspace] {
				continue
			}
			seen[t.Workspace] = true
			var id string
			err := db.queryRow(ctx, tx, "SELECT id "+inFlightTask, scanID, t.Workspace).Scan(&id)
			if err == nil {
				return scanfleet.Errorf(scanfleet.ECONFLICT, "scan %s already has a run in flight in workspace %s (task %s)", scanID, t.Workspace, id)
			} else if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		res, err := db.exec(ctx, tx, `UPDATE scans SET last_run_at = ?, manual_run_pending = FALSE,
			enabled = CASE WHEN single_run THEN FALSE ELSE enabled END, updated_at = ?
			WHERE id = ?`, micros(now), micros(now), scanID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errScanNotFound(scanID)
		}
		return db.createTasks(ctx, tx, tasks)
	})
	if err != nil {
		return db.taskInsertError(ctx, "create scan tasks", tasks, err)
	}
	return nil
}

// encodeObject writes a JSON object; nil is {}.
func encodeObject(m map[string]any) (string, error) {
	if m == nil {
		return "{}", nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
