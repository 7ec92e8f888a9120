package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/scanfleet/scanfleet"
)

const workspaceColumns = "id, name, description, scope, created_at, updated_at"

func scanWorkspace(r rowScanner) (*scanfleet.Workspace, error) {
	var (
		w                scanfleet.Workspace
		scope            string
		created, updated int64
	)
	if err := r.Scan(&w.ID, &w.Name, &w.Description, &scope, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(scope), &w.Scope); err != nil {
		return nil, fmt.Errorf("workspace %q: decode scope: %w", w.Name, err)
	}
	w.CreatedAt, w.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &w, nil
}

// CreateWorkspace stores w, setting its ID and times when they are zero. A
// taken name is ECONFLICT.
func (db *DB) CreateWorkspace(ctx context.Context, w *scanfleet.Workspace) error {
	if err := scanfleet.ValidateSlug("name", w.Name); err != nil {
		return err
	}
	if w.ID == "" {
		w.ID = scanfleet.NewID()
	}
	if w.CreatedAt.IsZero() {
		w.CreatedAt = db.now()
	}
	if w.UpdatedAt.IsZero() {
		w.UpdatedAt = w.CreatedAt
	}
	w.CreatedAt, w.UpdatedAt = truncTime(w.CreatedAt), truncTime(w.UpdatedAt)
	scope, err := json.Marshal(w.Scope)
	if err != nil {
		return fmt.Errorf("create workspace: encode scope: %w", err)
	}
	_, err = db.exec(ctx, db.write, "INSERT INTO workspaces ("+workspaceColumns+") VALUES (?, ?, ?, ?, ?, ?)",
		w.ID, w.Name, w.Description, string(scope), micros(w.CreatedAt), micros(w.UpdatedAt))
	if db.dialect.violation(err) == UniqueViolation {
		return scanfleet.Errorf(scanfleet.ECONFLICT, "workspace %q already exists", w.Name)
	} else if err != nil {
		return fmt.Errorf("create workspace: %w", err)
	}
	return nil
}

// FindWorkspace returns the workspace named name, or ENOTFOUND.
func (db *DB) FindWorkspace(ctx context.Context, name string) (*scanfleet.Workspace, error) {
	return db.findWorkspace(ctx, db.read, name, "")
}

func (db *DB) findWorkspace(ctx context.Context, q querier, name, lock string) (*scanfleet.Workspace, error) {
	w, err := scanWorkspace(db.queryRow(ctx, q, "SELECT "+workspaceColumns+" FROM workspaces WHERE name = ?"+lock, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, scanfleet.ErrWorkspaceNotFound(name)
	} else if err != nil {
		return nil, fmt.Errorf("find workspace: %w", err)
	}
	return w, nil
}

// ListWorkspaces returns one page of workspaces ordered by name.
func (db *DB) ListWorkspaces(ctx context.Context, page scanfleet.Page) ([]*scanfleet.Workspace, string, error) {
	page, err := normalizePage(page)
	if err != nil {
		return nil, "", err
	}
	query := "SELECT " + workspaceColumns + " FROM workspaces"
	var args []any
	if page.Cursor != "" {
		parts, err := decodeCursor(page.Cursor, 1)
		if err != nil {
			return nil, "", err
		}
		query += " WHERE name > ?"
		args = append(args, parts[0])
	}
	query += " ORDER BY name LIMIT ?"
	args = append(args, page.Limit+1)
	rows, err := db.query(ctx, db.read, query, args...)
	all, err := scanAll(rows, err, scanWorkspace)
	if err != nil {
		return nil, "", fmt.Errorf("list workspaces: %w", err)
	}
	out, next := pageOf(all, page.Limit, func(w *scanfleet.Workspace) string { return encodeCursor(w.Name) })
	return out, next, nil
}

// UpdateWorkspace changes the fields set in upd and returns the workspace
// after the change.
func (db *DB) UpdateWorkspace(ctx context.Context, name string, upd scanfleet.WorkspaceUpdate) (*scanfleet.Workspace, error) {
	var w *scanfleet.Workspace
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if w, err = db.findWorkspace(ctx, tx, name, db.dialect.RowLock); err != nil {
			return err
		}
		if upd.Description != nil {
			w.Description = *upd.Description
		}
		if upd.Scope != nil {
			w.Scope = *upd.Scope
		}
		w.UpdatedAt = truncTime(db.now())
		scope, err := json.Marshal(w.Scope)
		if err != nil {
			return fmt.Errorf("encode scope: %w", err)
		}
		_, err = db.exec(ctx, tx, "UPDATE workspaces SET description = ?, scope = ?, updated_at = ? WHERE id = ?",
			w.Description, string(scope), micros(w.UpdatedAt), w.ID)
		return err
	})
	if err != nil {
		return nil, wrap("update workspace", err)
	}
	return w, nil
}

// DeleteWorkspace removes the workspace; the schema's cascades remove its
// records, tasks (with their logs) and scan links. Scans that covered it
// stay, without it.
func (db *DB) DeleteWorkspace(ctx context.Context, name string) error {
	res, err := db.exec(ctx, db.write, "DELETE FROM workspaces WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("delete workspace: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("delete workspace: %w", err)
	} else if n == 0 {
		return scanfleet.ErrWorkspaceNotFound(name)
	}
	return nil
}

// workspaceID returns the id of the workspace named name, locking its row
// (where the dialect can) until tx ends, or ENOTFOUND.
func (db *DB) workspaceID(ctx context.Context, q querier, name string, lock bool) (string, error) {
	query := "SELECT id FROM workspaces WHERE name = ?"
	if lock {
		query += db.dialect.RowLock
	}
	var id string
	err := db.queryRow(ctx, q, query, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", scanfleet.ErrWorkspaceNotFound(name)
	} else if err != nil {
		return "", fmt.Errorf("find workspace: %w", err)
	}
	return id, nil
}
