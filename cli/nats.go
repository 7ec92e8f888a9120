package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
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
	ca       string // PEM workers trust for a tls:// url; "" for none
}

// natsTLS are the embedded NATS server's TLS files.
type natsTLS struct {
	cert, key, ca string
}

// load returns the server's TLS config and the PEM workers should trust
// (the --nats-tls-ca file, or the certificate itself when self-signed);
// nil when no certificate is set.
func (f natsTLS) load() (*tls.Config, string, error) {
	if f.cert == "" && f.key == "" {
		if f.ca != "" {
			return nil, "", usagef("--nats-tls-ca needs --nats-tls-cert and --nats-tls-key")
		}
		return nil, "", nil
	}
	if f.cert == "" || f.key == "" {
		return nil, "", usagef("--nats-tls-cert and --nats-tls-key go together")
	}
	pair, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, "", fmt.Errorf("load the NATS TLS certificate: %w", err)
	}
	trust := f.ca
	if trust == "" {
		trust = f.cert
	}
	pem, err := os.ReadFile(trust)
	if err != nil {
		return nil, "", fmt.Errorf("read the CA workers trust: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, string(pem), nil
}

// startNATS starts the embedded NATS server in dataDir, or connects to the
// external one at externalURL.
func startNATS(ctx context.Context, addr, externalURL, storeDir string, tlsFiles natsTLS, store scanfleet.Store, lease time.Duration, logger *slog.Logger) (*natsQueue, error) {
	q := &natsQueue{}
	tlsConfig, ca, err := tlsFiles.load()
	if err != nil {
		return nil, err
	}
	if externalURL != "" {
		if tlsConfig != nil {
			return nil, usagef("--nats-tls-cert is for the embedded NATS server; with --nats-url the cluster's own TLS applies")
		}
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
			TLS:          tlsConfig,
		})
		if err != nil {
			return nil, fmt.Errorf("start embedded NATS on %s: %w", addr, err)
		}
		if q.conn, err = q.embedded.InternalConn(); err != nil {
			q.embedded.Shutdown()
			return nil, err
		}
		q.url, q.ca = q.embedded.ClientURL(), ca
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
