package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/scanfleet/scanfleet"
)

// PutCloud replaces the workspace's cloud environment.
func (db *DB) PutCloud(ctx context.Context, env *scanfleet.CloudEnv) error {
	if env.UpdatedAt.IsZero() {
		env.UpdatedAt = db.now()
	}
	env.UpdatedAt = truncTime(env.UpdatedAt)
	return db.inTx(ctx, func(tx *sql.Tx) error {
		ws, err := db.findWorkspace(ctx, tx, env.Workspace, "")
		if err != nil {
			return err
		}
		_, err = db.exec(ctx, tx, `INSERT INTO workspace_clouds (workspace_id, data, vm_count, rule_count, updated_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (workspace_id) DO UPDATE SET data = excluded.data, vm_count = excluded.vm_count,
				rule_count = excluded.rule_count, updated_at = excluded.updated_at`,
			ws.ID, string(env.Data), env.VMCount, env.RuleCount, micros(env.UpdatedAt))
		if err != nil {
			return fmt.Errorf("put cloud: %w", err)
		}
		return nil
	})
}

// GetCloud returns the workspace's cloud environment, or ENOTFOUND.
func (db *DB) GetCloud(ctx context.Context, workspace string) (*scanfleet.CloudEnv, error) {
	if _, err := db.FindWorkspace(ctx, workspace); err != nil {
		return nil, err
	}
	var (
		env     = scanfleet.CloudEnv{Workspace: workspace}
		data    string
		updated int64
	)
	err := db.queryRow(ctx, db.read, `SELECT c.data, c.vm_count, c.rule_count, c.updated_at
		FROM workspace_clouds c JOIN workspaces w ON w.id = c.workspace_id WHERE w.name = ?`, workspace).
		Scan(&data, &env.VMCount, &env.RuleCount, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, scanfleet.Errorf(scanfleet.ENOTFOUND, "workspace %q has no cloud environment; PUT one first", workspace)
	} else if err != nil {
		return nil, fmt.Errorf("get cloud: %w", err)
	}
	env.Data, env.UpdatedAt = []byte(data), fromMicros(updated)
	return &env, nil
}
