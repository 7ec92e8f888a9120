package postgres_test

import (
	"context"
	"sync"
	"testing"

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

// TestMigrateDownUp: see storetest.MigrateDownUp.
func TestMigrateDownUp(t *testing.T) {
	t.Parallel()
	storetest.MigrateDownUp(t, open(t))
}
