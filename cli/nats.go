package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/natsbus"
)

// natsQueue is the server's side of the NATS JetStream transport: the
// embedded NATS server (or a connection to an external one) and the
// dispatch bus.
type natsQueue struct {
	natsbus.Queue
	embedded *natsbus.Server
	conn     *nats.Conn
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
			Addr:         addr,
			StoreDir:     storeDir,
			Logger:       logger.With(slog.String("component", "nats")),
			Authenticate: natsbus.Authenticator(store),
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
	q.Bus, err = natsbus.NewBus(ctx, q.conn, natsbus.BusConfig{AckWait: lease, Logger: logger})
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("set up the NATS task stream: %w", err)
	}
	return q, nil
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

// OnRevoke closes a revoked worker's connections to the embedded server.
// On an external NATS server its own accounts decide; the worker API
// refuses the revoked credential either way.
func (q *natsQueue) OnRevoke(_ context.Context, w *scanfleet.Worker) error {
	if q.embedded == nil {
		return nil
	}
	_, err := q.embedded.Disconnect(w.ID)
	return err
}
