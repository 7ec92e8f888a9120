package natsbus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet/natsbus"
)

// Every goroutine of nats-server and nats.go ends with Server.Shutdown and
// Conn.Close, so goleak runs without exceptions.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quiet discards log lines: a line logged after a test ends must not reach
// t.Log.
var quiet = slog.New(slog.DiscardHandler)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// registry stands in for the store behind ServerConfig.Authenticate.
type registry struct {
	mu sync.Mutex
	m  map[string]cred
}

type cred struct{ pass, pool, site string }

func (r *registry) add(id, pool, site string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]cred{}
	}
	pass := randHex(16)
	r.m[id] = cred{pass, pool, site}
	return pass
}

func (r *registry) authenticate(user, pass string) (string, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.m[user]
	if !ok || c.pass != pass {
		return "", "", false
	}
	return c.pool, c.site, true
}

// embedded is a started embedded server with its worker registry.
type embedded struct {
	srv *natsbus.Server
	reg *registry
	dir string
}

func startEmbedded(t testing.TB, addr, dir string, reg *registry) *embedded {
	t.Helper()
	if reg == nil {
		reg = &registry{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := natsbus.StartServer(ctx, natsbus.ServerConfig{
		Addr:           addr,
		StoreDir:       dir,
		Authenticate:   reg.authenticate,
		ServerPassword: "test-server-password-0123456789",
		Logger:         quiet,
	})
	require.NoError(t, err)
	t.Cleanup(srv.Shutdown)
	return &embedded{srv: srv, reg: reg, dir: dir}
}

// env is one NATS server under test, with a Bus on a stream of its own.
type env struct {
	name     string
	bus      *natsbus.Bus
	busConn  *nats.Conn
	cfg      natsbus.BusConfig
	emb      *embedded // nil for the external server
	url      string
	workerNo int
	conns    []*nats.Conn // the workers' connections
}

// eachServer runs fn against the embedded server (with auth) and, when
// TEST_NATS_URL is set, against that external server.
func eachServer(t *testing.T, cfg natsbus.BusConfig, fn func(t *testing.T, e *env)) {
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		fn(t, newEmbeddedEnv(t, cfg))
	})
	t.Run("external", func(t *testing.T) {
		t.Parallel()
		fn(t, newExternalEnv(t, cfg))
	})
}

func newEmbeddedEnv(t *testing.T, cfg natsbus.BusConfig) *env {
	emb := startEmbedded(t, "127.0.0.1:-1", t.TempDir(), nil)
	nc, err := emb.srv.InternalConn()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	cfg.Logger = quiet
	bus, err := natsbus.NewBus(t.Context(), nc, cfg)
	require.NoError(t, err)
	return &env{name: "embedded", bus: bus, busConn: nc, cfg: cfg.WithDefaults(), emb: emb, url: emb.srv.ClientURL()}
}

func newExternalEnv(t *testing.T, cfg natsbus.BusConfig) *env {
	url := os.Getenv("TEST_NATS_URL")
	if url == "" {
		t.Skip("TEST_NATS_URL is not set: the external NATS server tests need a nats-server with JetStream, e.g. nats://127.0.0.1:4222")
	}
	nc, err := natsbus.Connect(url, "", "", quiet)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	// A stream and subject prefix of its own, so parallel tests (and other
	// runs on the same server) never see each other's dispatches.
	id := randHex(6)
	cfg.Stream = "SCANFLEET_TEST_" + id
	cfg.SubjectPrefix = "sftest" + id
	cfg.MemoryStorage = true
	cfg.Logger = quiet
	bus, err := natsbus.NewBus(t.Context(), nc, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		js, err := jetstream.New(nc)
		if err == nil {
			err = js.DeleteStream(ctx, cfg.Stream)
		}
		if err != nil {
			t.Errorf("delete test stream %s: %v", cfg.Stream, err)
		}
	})
	return &env{name: "external", bus: bus, busConn: nc, cfg: cfg.WithDefaults(), url: url}
}

// connect opens a worker connection: with a fresh credential on the
// embedded server, without one on the external server.
func (e *env) connect(t testing.TB, id, pool, site string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	user, pass := "", ""
	if e.emb != nil {
		user, pass = id, e.emb.reg.add(id, pool, site)
	}
	nc, err := natsbus.Connect(e.url, user, pass, quiet, opts...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	e.conns = append(e.conns, nc)
	return nc
}

// worker provisions, connects and binds a consumer for pool and site.
func (e *env) worker(t testing.TB, pool, site string) (*natsbus.Consumer, string) {
	t.Helper()
	e.workerNo++
	id := fmt.Sprintf("w%d-%s", e.workerNo, randHex(4))
	require.NoError(t, e.bus.Provision(t.Context(), pool, site))
	nc := e.connect(t, id, pool, site)
	c, err := natsbus.NewConsumer(t.Context(), nc, natsbus.ConsumerConfig{
		Stream: e.cfg.Stream, SubjectPrefix: e.cfg.SubjectPrefix,
		Pool: pool, Site: site, WorkerID: id, Logger: quiet,
	})
	require.NoError(t, err)
	return c, id
}

func taskID() string { return "task-" + randHex(8) }

// fetchIDs fetches what is ready or arrives within wait and acks it.
func fetchIDs(t testing.TB, c *natsbus.Consumer, max int, wait time.Duration) []string {
	t.Helper()
	ds, err := c.Fetch(t.Context(), max, wait)
	require.NoError(t, err)
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.TaskID)
		require.NoError(t, d.Ack(t.Context()))
	}
	return ids
}
