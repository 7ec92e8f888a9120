package natsbus_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/natsbus"
)

func TestEmbeddedDataSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir, reg := t.TempDir(), &registry{}
	emb := startEmbedded(t, "127.0.0.1:-1", dir, reg)
	nc, err := emb.srv.InternalConn()
	require.NoError(t, err)
	bus, err := natsbus.NewBus(t.Context(), nc, natsbus.BusConfig{Logger: quiet})
	require.NoError(t, err)
	var want []string
	for range 3 {
		id := taskID()
		want = append(want, id)
		require.NoError(t, bus.Publish(t.Context(), natsbus.Dispatch{TaskID: id, Attempt: 1, Pool: "internal", Site: "dc1"}))
	}
	nc.Close()
	emb.srv.Shutdown()

	emb = startEmbedded(t, "127.0.0.1:-1", dir, reg)
	nc, err = emb.srv.InternalConn()
	require.NoError(t, err)
	defer nc.Close()
	e := &env{bus: nil, busConn: nc, emb: emb, url: emb.srv.ClientURL(), cfg: natsbus.BusConfig{}.WithDefaults()}
	e.bus, err = natsbus.NewBus(t.Context(), nc, natsbus.BusConfig{Logger: quiet})
	require.NoError(t, err)
	n, err := e.bus.Pending(t.Context(), "internal")
	require.NoError(t, err)
	require.Equal(t, 3, n)
	w, _ := e.worker(t, "internal", "dc1")
	require.ElementsMatch(t, want, fetchIDs(t, w, 10, time.Second))
}

// A worker's connection outlives a restart of the embedded server (same
// address, same store): a Fetch waiting at the time returns, and after the
// restart the worker reconnects, re-authenticates and fetches again.
func TestWorkerReconnectsAfterServerRestart(t *testing.T) {
	t.Parallel()
	dir, reg := t.TempDir(), &registry{}
	emb := startEmbedded(t, "127.0.0.1:-1", dir, reg)
	url := emb.srv.ClientURL()
	_, port, err := net.SplitHostPort(url[len("nats://"):])
	require.NoError(t, err)

	busConn, err := emb.srv.InternalConn()
	require.NoError(t, err)
	bus, err := natsbus.NewBus(t.Context(), busConn, natsbus.BusConfig{Logger: quiet})
	require.NoError(t, err)
	e := &env{bus: bus, busConn: busConn, emb: emb, url: url, cfg: natsbus.BusConfig{}.WithDefaults()}
	w, _ := e.worker(t, "external", "")
	id := taskID()
	require.NoError(t, bus.Publish(t.Context(), natsbus.Dispatch{TaskID: id, Attempt: 1, Pool: "external"}))
	require.Equal(t, []string{id}, fetchIDs(t, w, 1, time.Second))

	// A Fetch waiting when the server goes away returns at once, empty.
	type result struct {
		n       int
		err     error
		elapsed time.Duration
	}
	waiting := make(chan result, 1)
	go func() {
		start := time.Now()
		ds, err := w.Fetch(t.Context(), 1, 20*time.Second)
		waiting <- result{len(ds), err, time.Since(start)}
	}()
	time.Sleep(100 * time.Millisecond)
	busConn.Close() // in-process: it dies with its server
	emb.srv.Shutdown()
	r := <-waiting
	require.NoError(t, r.err)
	require.Zero(t, r.n)
	require.Less(t, r.elapsed, 3*time.Second)

	// While the server is down, Fetch returns nothing rather than failing.
	ds, err := w.Fetch(t.Context(), 1, 300*time.Millisecond)
	require.NoError(t, err)
	require.Empty(t, ds)

	emb = startEmbedded(t, "127.0.0.1:"+port, dir, reg)
	busConn, err = emb.srv.InternalConn()
	require.NoError(t, err)
	defer busConn.Close()
	bus, err = natsbus.NewBus(t.Context(), busConn, natsbus.BusConfig{Logger: quiet})
	require.NoError(t, err)
	after := taskID()
	require.NoError(t, bus.Publish(t.Context(), natsbus.Dispatch{TaskID: after, Attempt: 1, Pool: "external"}))

	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 1 && time.Now().Before(deadline) {
		got = append(got, fetchIDs(t, w, 2, 500*time.Millisecond)...)
	}
	require.Equal(t, []string{after}, got)
}
