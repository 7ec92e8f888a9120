package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/postgres"
	"github.com/scanfleet/scanfleet/postgres/pgtest"
	"github.com/scanfleet/scanfleet/sqlstore"
	"github.com/scanfleet/scanfleet/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func open(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: pgtest.URL(t)})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func TestStore(t *testing.T) {
	t.Parallel()
	pgtest.SkipIfUnset(t)
	storetest.Run(t, func(t *testing.T) scanfleet.Store { return open(t) })
}

func TestConfig(t *testing.T) {
	t.Parallel()
	require.Equal(t, 20, postgres.Config{}.WithDefaults().MaxConns)
	_, err := postgres.Open(t.Context(), postgres.Config{})
	require.ErrorContains(t, err, "URL is empty")
	_, err = postgres.Open(t.Context(), postgres.Config{URL: "postgres://u:s3cret@127.0.0.1:1/db?sslmode=bogus"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
}

// TestConcurrentOpen starts several servers on one schema at once: the
// migration lock lets one migrate and the others find the schema ready.
func TestConcurrentOpen(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			db, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 2})
			if err == nil {
				err = db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	db, err := postgres.Open(ctx, postgres.Config{URL: url})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.CreateWorkspace(ctx, &scanfleet.Workspace{Name: "acme"}))
}

// TestMigrateDownUp undoes the latest migrations and applies them again
// over a database with data in it: every Down section works, and tasks
// survive the round trip with the runtime columns back at their defaults.
func TestMigrateDownUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := open(t)
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
