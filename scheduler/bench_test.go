package scheduler_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/postgres"
	"github.com/scanfleet/scanfleet/postgres/pgtest"
	"github.com/scanfleet/scanfleet/scheduler"
	"github.com/scanfleet/scanfleet/sqlite"
)

// BenchmarkPass plans 10 scans over 10,000 workspaces each: 100,000 scan
// and workspace pairs, every one with a run that ended recently, so that a
// pass reads everything and starts nothing (a steady state). It reports
// the time per pass; the first pass, which starts all 100,000 runs, is
// reported as first-pass-ms.
//
//	TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench Pass -benchtime 5x ./scheduler/
func BenchmarkPass(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(b.TempDir(), "s.db")})
		require.NoError(b, err)
		defer store.Close()
		benchPass(b, store)
	})
	b.Run("postgres", func(b *testing.B) {
		store, err := postgres.Open(context.Background(), postgres.Config{URL: pgtest.URL(b)})
		require.NoError(b, err)
		defer store.Close()
		benchPass(b, store)
	})
}

func benchPass(b *testing.B, store scanfleet.Store) {
	const workspaces, scans = 10000, 10
	ctx := context.Background()
	reg, err := scanfleet.NewRegistry(scanfleet.NoopTaskType())
	require.NoError(b, err)
	names := make([]string, workspaces)
	for i := range names {
		names[i] = fmt.Sprintf("ws-%05d", i)
		require.NoError(b, store.CreateWorkspace(ctx, &scanfleet.Workspace{Name: names[i],
			Scope: scanfleet.Scope{Include: []string{fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)}, Exclude: []string{}}}))
	}
	for i := range scans {
		sc := &scanfleet.Scan{Name: fmt.Sprintf("scan-%d", i), Type: "noop", Workspaces: names,
			Frequency: scanfleet.Duration(time.Hour), Enabled: true}
		require.NoError(b, sc.Validate(reg))
		require.NoError(b, store.CreateScan(ctx, sc))
	}
	clock := time.Now()
	s, err := scheduler.New(store, reg, scheduler.Config{Now: func() time.Time { return clock }, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	start := time.Now()
	require.NoError(b, s.Tick(ctx)) // starts every run
	first := time.Since(start)
	counts, err := store.CountTasksByStatus(ctx)
	require.NoError(b, err)
	require.EqualValues(b, workspaces*scans, counts[scanfleet.TaskCreated])
	// End them all, then plan again and again: nothing is due for an hour.
	endAll(b, store, clock)
	b.ResetTimer()
	for range b.N {
		require.NoError(b, s.Tick(ctx))
	}
	b.StopTimer()
	counts, err = store.CountTasksByStatus(ctx)
	require.NoError(b, err)
	require.EqualValues(b, workspaces*scans, counts[scanfleet.TaskFinished], "a steady pass starts nothing")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/pass")
	b.ReportMetric(float64(first.Milliseconds()), "first-pass-ms")
}

// endAll runs every task through the runtime's batch calls: routed,
// claimed by one worker, finished.
func endAll(b *testing.B, store scanfleet.Store, now time.Time) {
	ctx := context.Background()
	for {
		routed, err := store.RouteTasks(ctx, 5000, now)
		require.NoError(b, err)
		if len(routed) == 0 {
			break
		}
	}
	for {
		held, err := store.ClaimNext(ctx, scanfleet.ClaimFilter{Pool: scanfleet.PoolExternal, Types: []string{"noop"}, Max: 1000},
			"bench", time.Hour, now)
		require.NoError(b, err)
		if len(held) == 0 {
			return
		}
		outs := make([]scanfleet.Outcome, len(held))
		for i, t := range held {
			outs[i] = scanfleet.Outcome{TaskID: t.ID, Change: scanfleet.TaskChange{Status: scanfleet.TaskFinished}}
		}
		_, errs, err := store.FinishTasks(ctx, "bench", outs, now)
		require.NoError(b, err)
		for _, err := range errs {
			require.NoError(b, err)
		}
	}
}
