package storetest

import (
	"testing"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/sqlstore"
)

// MigrateDownUp undoes the migrations after the second and applies them
// again over a database with data in it: every Down section works, and
// tasks survive the round trip with the runtime columns back at their
// defaults. Each engine runs it on a store of its own.
func MigrateDownUp(t *testing.T, db *sqlstore.DB) {
	ctx := t.Context()
	require.NoError(t, db.CreateWorkspace(ctx, &scanfleet.Workspace{Name: "acme"}))
	task := &scanfleet.Task{Type: "noop", Workspace: "acme", Status: scanfleet.TaskRequested}
	require.NoError(t, db.CreateTasks(ctx, []*scanfleet.Task{task}))
	_, err := db.ClaimTask(ctx, task.ID, "w1", time.Minute, time.Now())
	require.NoError(t, err)

	// Provider.Close would close the store's pool; it is not called.
	p, err := goose.NewProvider(db.Dialect().Goose, db.Writer(), sqlstore.Migrations())
	require.NoError(t, err)
	_, err = p.DownTo(ctx, 2)
	require.NoError(t, err)
	_, err = p.Up(ctx)
	require.NoError(t, err)

	got, err := db.FindTask(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, scanfleet.TaskStarted, got.Status)
	require.Nil(t, got.LeaseExpiresAt)
}
