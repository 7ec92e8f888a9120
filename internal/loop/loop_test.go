package loop_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/internal/loop"
)

func TestLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ticks atomic.Int64
		l := loop.New("test", time.Minute, func(context.Context) error {
			ticks.Add(1)
			return errors.New("logged, not fatal")
		}, slog.New(slog.DiscardHandler))
		require.NoError(t, l.Start(context.Background()))
		require.Error(t, l.Start(context.Background()), "started twice")
		synctest.Wait()
		require.EqualValues(t, 1, ticks.Load(), "the first tick is at once")
		time.Sleep(time.Minute)
		synctest.Wait()
		require.EqualValues(t, 2, ticks.Load(), "then one per interval")
		l.Wake()
		synctest.Wait()
		require.EqualValues(t, 3, ticks.Load(), "a wake ticks at once")
		require.True(t, l.Stop())
		time.Sleep(time.Hour)
		require.EqualValues(t, 3, ticks.Load(), "no tick after Stop")
		require.True(t, l.Stop())
		require.False(t, loop.New("idle", time.Second, nil, nil).Stop(), "never started")
		idle := loop.New("idle", time.Second, nil, nil)
		idle.Wake()
		idle.Wake() // wakes before a tick are one, and never block
	})
}
