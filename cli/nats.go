package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/scanfleet/scanfleet"
	sfhttp "github.com/scanfleet/scanfleet/http"
	"github.com/scanfleet/scanfleet/natsbus"
	"github.com/scanfleet/scanfleet/worker"
)

// natsQueue is the server's side of the NATS JetStream transport: the
// embedded NATS server (or a connection to an external one) and the
// dispatch bus.
type natsQueue struct {
	embedded *natsbus.Server
	conn     *nats.Conn
	bus      *natsbus.Bus
	url      string // what workers connect to
}

// startNATS starts the embedded NATS server in dataDir, or connects to the
// external one at externalURL.
func startNATS(ctx context.Context, addr, externalURL, storeDir string, store scanfleet.Store, lease time.Duration, logger *slog.Logger) (*natsQueue, error) {
	q := &natsQueue{}
	var err error
	if externalURL != "" {
		if q.conn, err = natsbus.Connect(externalURL, "", "", logger); err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w", externalURL, err)
		}
		q.url = externalURL
	} else {
		q.embedded, err = natsbus.StartServer(ctx, natsbus.ServerConfig{
			Addr:     addr,
			StoreDir: storeDir,
			Logger:   logger.With(slog.String("component", "nats")),
			// A worker connects as its id with its credential; its pool and
			// site scope what it may read.
			Authenticate: func(user, pass string) (string, string, bool) {
				actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				w, err := store.FindWorkerByHash(actx, scanfleet.HashToken(pass))
				if err != nil || w.ID != user {
					return "", "", false
				}
				return string(w.Pool), w.Site, true
			},
		})
		if err != nil {
			return nil, fmt.Errorf("start embedded NATS on %s: %w", addr, err)
		}
		if q.conn, err = q.embedded.InternalConn(); err != nil {
			q.embedded.Shutdown()
			return nil, err
		}
		q.url = q.embedded.ClientURL()
	}
	q.bus, err = natsbus.NewBus(ctx, q.conn, natsbus.BusConfig{AckWait: lease, Logger: logger})
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("set up the NATS task stream: %w", err)
	}
	return q, nil
}

// Dispatch publishes requested tasks to their pool's queue; each dispatch
// is identified by task and attempt, so a second publish is dropped.
func (q *natsQueue) Dispatch(ctx context.Context, tasks []*scanfleet.Task) error {
	ds := make([]natsbus.Dispatch, len(tasks))
	for i, t := range tasks {
		ds[i] = natsbus.Dispatch{TaskID: t.ID, Attempt: t.Attempts + 1, Pool: string(t.Pool), Site: t.Site}
	}
	return q.bus.PublishBatch(ctx, ds)
}

// Command sends a command to a NATS worker.
func (q *natsQueue) Command(ctx context.Context, workerID string, c sfhttp.Command) error {
	return q.bus.Command(ctx, workerID, natsbus.Command{Type: c.Type, TaskID: c.TaskID})
}

// OnEnrol creates the consumers a new NATS worker pulls from.
func (q *natsQueue) OnEnrol(ctx context.Context, w *scanfleet.Worker) error {
	if w.Transport != "nats" {
		return nil
	}
	return q.bus.Provision(ctx, string(w.Pool), w.Site)
}

// Close closes the connection and stops the embedded server.
func (q *natsQueue) Close() {
	if q.conn != nil {
		q.conn.Close()
	}
	if q.embedded != nil {
		q.embedded.Shutdown()
	}
}

// natsSource connects a worker to NATS as itself and returns its source.
func natsSource(ctx context.Context, url, workerID, credential, pool, site string, logger *slog.Logger) (worker.Source, func(), error) {
	nc, err := natsbus.Connect(url, workerID, credential, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	c, err := natsbus.NewConsumer(ctx, nc, natsbus.ConsumerConfig{Pool: pool, Site: site, WorkerID: workerID, Logger: logger})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	src, err := worker.NewNATSSource(ctx, c)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return src, nc.Close, nil
}
