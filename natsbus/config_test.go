package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet/natsbus"
)

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	auth := func(string, string) (string, string, bool) { return "", "", false }
	ctx := t.Context()

	for _, tc := range []struct {
		name string
		cfg  natsbus.ServerConfig
		want string
	}{
		{"no authenticate", natsbus.ServerConfig{Addr: "127.0.0.1:-1"}, "Authenticate: is nil"},
		{"bad addr", natsbus.ServerConfig{Addr: "localhost", Authenticate: auth}, "Addr:"},
		{"bad port", natsbus.ServerConfig{Addr: "127.0.0.1:99999", Authenticate: auth}, "Addr:"},
		{"short password", natsbus.ServerConfig{Addr: "127.0.0.1:-1", Authenticate: auth, ServerPassword: "short"}, "ServerPassword:"},
		{"bad stream", natsbus.ServerConfig{Addr: "127.0.0.1:-1", Authenticate: auth, Stream: "a.b"}, "Stream:"},
		{"bad prefix", natsbus.ServerConfig{Addr: "127.0.0.1:-1", Authenticate: auth, SubjectPrefix: "sf.>"}, "SubjectPrefix:"},
	} {
		t.Run("server/"+tc.name, func(t *testing.T) {
			_, err := natsbus.StartServer(ctx, tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}

	e := newEmbeddedEnv(t, natsbus.BusConfig{})
	for _, tc := range []struct {
		name string
		cfg  natsbus.BusConfig
		want string
	}{
		{"short ack wait", natsbus.BusConfig{AckWait: time.Millisecond}, "AckWait:"},
		{"bad pool", natsbus.BusConfig{Pools: []string{"ext_ernal"}}, "Pools:"},
		{"replicas", natsbus.BusConfig{Replicas: 7}, "Replicas:"},
		{"duplicate window", natsbus.BusConfig{DuplicateWindow: time.Millisecond}, "DuplicateWindow:"},
		{"site consumer idle", natsbus.BusConfig{SiteConsumerIdle: time.Millisecond}, "SiteConsumerIdle:"},
	} {
		t.Run("bus/"+tc.name, func(t *testing.T) {
			_, err := natsbus.NewBus(ctx, e.busConn, tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}

	for _, tc := range []struct {
		name string
		d    natsbus.Dispatch
		want string
	}{
		{"no task", natsbus.Dispatch{Attempt: 1, Pool: "external"}, "TaskID:"},
		{"attempt 0", natsbus.Dispatch{TaskID: "t", Pool: "external"}, "Attempt:"},
		{"wildcard pool", natsbus.Dispatch{TaskID: "t", Attempt: 1, Pool: "*"}, "Pool:"},
		{"no pool", natsbus.Dispatch{TaskID: "t", Attempt: 1}, "Pool:"},
		{"wildcard site", natsbus.Dispatch{TaskID: "t", Attempt: 1, Pool: "external", Site: ">"}, "Site:"},
		{"reserved site", natsbus.Dispatch{TaskID: "t", Attempt: 1, Pool: "external", Site: "_"}, "Site:"},
		{"dotted site", natsbus.Dispatch{TaskID: "t", Attempt: 1, Pool: "external", Site: "a.b"}, "Site:"},
	} {
		t.Run("dispatch/"+tc.name, func(t *testing.T) {
			require.ErrorContains(t, e.bus.Publish(ctx, tc.d), tc.want)
			require.ErrorContains(t, e.bus.PublishBatch(ctx, []natsbus.Dispatch{tc.d}), tc.want)
		})
	}

	for _, tc := range []struct {
		name string
		cfg  natsbus.ConsumerConfig
		want string
	}{
		{"no pool", natsbus.ConsumerConfig{WorkerID: "w"}, "Pool:"},
		{"no worker", natsbus.ConsumerConfig{Pool: "external"}, "WorkerID:"},
		{"wildcard worker", natsbus.ConsumerConfig{Pool: "external", WorkerID: "w.>"}, "WorkerID:"},
		{"bad site", natsbus.ConsumerConfig{Pool: "external", Site: "-x", WorkerID: "w"}, "Site:"},
	} {
		t.Run("consumer/"+tc.name, func(t *testing.T) {
			_, err := natsbus.NewConsumer(ctx, e.busConn, tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}

	t.Run("consumer/not provisioned", func(t *testing.T) {
		_, err := natsbus.NewConsumer(ctx, e.busConn, natsbus.ConsumerConfig{
			Stream: e.cfg.Stream, SubjectPrefix: e.cfg.SubjectPrefix, Pool: "external", Site: "nowhere", WorkerID: "w",
		})
		require.ErrorIs(t, err, natsbus.ErrNotProvisioned)
	})
	t.Run("fetch/max", func(t *testing.T) {
		c, _ := e.worker(t, "external", "")
		_, err := c.Fetch(ctx, 0, time.Second)
		require.ErrorContains(t, err, "max")
	})
	t.Run("command/bad worker", func(t *testing.T) {
		require.ErrorContains(t, e.bus.Command(ctx, "a.b", natsbus.Command{Type: natsbus.CommandCancel}), "workerID:")
		require.ErrorContains(t, e.bus.Command(ctx, "w", natsbus.Command{}), "Type")
	})
}

func TestStartServerAddressTaken(t *testing.T) {
	t.Parallel()
	emb := startEmbedded(t, "127.0.0.1:-1", "", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := natsbus.StartServer(ctx, natsbus.ServerConfig{
		Addr:         emb.srv.ClientURL()[len("nats://"):],
		Authenticate: func(string, string) (string, string, bool) { return "", "", false },
		Logger:       quiet,
	})
	require.ErrorContains(t, err, "listen")
	require.Less(t, time.Since(start), 3*time.Second, "fails at once, not at the end of the wait")
}
