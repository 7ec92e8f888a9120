package http

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// The hub forgets, past maxPeers workers, only what it keeps to save
// store writes (when a worker last pulled and beat): a command waiting,
// an open poll and a drain stay.
func TestHubForgetsOnlyCachedTimes(t *testing.T) {
	t.Parallel()
	h := newHub()
	now := time.Now()
	h.push("commanded", Command{Type: "cancel", TaskID: "t1"})
	woken, done := h.wait("polling", scanfleet.PoolExternal)
	defer done()
	h.revoke("revoked")
	h.setDraining("draining", scanfleet.Heartbeat{Draining: true, Session: "s1"})
	for i := range maxPeers {
		require.True(t, h.duePull(fmt.Sprintf("w%d", i), now, time.Minute))
	}
	require.LessOrEqual(t, len(h.peers), maxPeers+1)
	require.True(t, h.duePull("w0", now, time.Minute), "forgotten: read again")
	require.Equal(t, []Command{{Type: "cancel", TaskID: "t1"}}, h.take("commanded"))
	require.True(t, h.isDraining("revoked"))
	require.True(t, h.isDraining("draining"))
	h.setDraining("revoked", scanfleet.Heartbeat{Session: "s2"})
	require.True(t, h.isDraining("revoked"), "a revoked worker's drain is for good")
	h.setDraining("draining", scanfleet.Heartbeat{Session: "s2"})
	require.False(t, h.isDraining("draining"), "a new process of the worker")
	h.NotifyPool(scanfleet.PoolExternal)
	select {
	case <-woken:
	default:
		t.Fatal("the open poll was not woken")
	}
}
