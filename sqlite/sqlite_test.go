package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/sqlite"
	"github.com/scanfleet/scanfleet/sqlstore"
	"github.com/scanfleet/scanfleet/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func open(t testing.TB) *sqlstore.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "scanfleet.db")})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func TestStore(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) scanfleet.Store { return open(t) })
}

func TestConfig(t *testing.T) {
	t.Parallel()
	cfg := sqlite.Config{}.WithDefaults()
	require.Equal(t, "scanfleet.db", cfg.Path)
	require.Equal(t, 10*time.Second, cfg.BusyTimeout)
	require.GreaterOrEqual(t, cfg.ReadConns, 4)

	_, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "x.db"), ReadConns: -1})
	require.ErrorContains(t, err, "ReadConns")
}

func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "nested", "dir", "scanfleet.db")
	db, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	require.NoError(t, err)
	require.NoError(t, db.CreateWorkspace(ctx, &scanfleet.Workspace{Name: "acme"}))
	require.NoError(t, db.Close())

	db, err = sqlite.Open(ctx, sqlite.Config{Path: path})
	require.NoError(t, err, "migrating an up-to-date database is a no-op")
	defer db.Close()
	_, err = db.FindWorkspace(ctx, "acme")
	require.NoError(t, err)
}

// TestConcurrentWriters checks that writers queue instead of failing with
// SQLITE_BUSY, also when a second store (another process) shares the file.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "scanfleet.db")
	var stores []*sqlstore.DB
	for range 2 {
		db, err := sqlite.Open(ctx, sqlite.Config{Path: path})
		require.NoError(t, err)
		t.Cleanup(func() { db.Close() })
		stores = append(stores, db)
	}
	require.NoError(t, stores[0].CreateWorkspace(ctx, &scanfleet.Workspace{Name: "acme"}))
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 6 {
		s := stores[w%2]
		wg.Go(func() {
			for i := range 10 {
				task := &scanfleet.Task{Type: "noop", Workspace: "acme"}
				if err := s.CreateTasks(ctx, []*scanfleet.Task{task}); err != nil {
					errs <- err
					return
				}
				if _, err := s.TransitionTask(ctx, task.ID, scanfleet.TaskChange{Status: scanfleet.TaskQueued}, time.Now()); err != nil {
					errs <- err
					return
				}
				if err := s.AppendTaskLogs(ctx, task.ID, []string{"a", "b"}, time.Now()); err != nil {
					errs <- err
					return
				}
				rec, _ := scanfleet.NewRecord(map[string]any{"kind": "host", "ip": fmt.Sprintf("10.%d.0.%d", w, i+1)})
				if _, err := s.UpsertRecords(ctx, "acme", task.ID, []scanfleet.Record{rec}, time.Now()); err != nil {
					errs <- err
					return
				}
				if _, _, err := s.ListTasks(ctx, scanfleet.TaskFilter{Page: scanfleet.Page{Limit: 5}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	counts, err := stores[1].CountTasksByStatus(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(60), counts[scanfleet.TaskQueued])
}

// TestMigrateDownUp: see storetest.MigrateDownUp.
func TestMigrateDownUp(t *testing.T) {
	t.Parallel()
	storetest.MigrateDownUp(t, open(t))
}
