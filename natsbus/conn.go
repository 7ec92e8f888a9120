package natsbus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/nats-io/nats.go"
)

const reconnectBufSize = 8 << 20 // bytes buffered (acks, pulls) while reconnecting

// TrustPEM returns the option that makes a connection trust the PEM
// certificates for TLS (the embedded server's own, usually); nil when pem
// is empty. The error says when the PEM holds no certificate.
func TrustPEM(pem string) (nats.Option, error) {
	if pem == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(pem)) {
		return nil, errors.New("the NATS CA holds no PEM certificate")
	}
	return nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), nil
}

// Connect opens a connection for a worker (user = worker id, pass = its
// secret) or for the server (ServerUser), or an unauthenticated one when user
// is "" (an external server without auth). The first connect fails fast, so
// a wrong URL or credential shows at once; after that the connection
// reconnects forever, every 250 ms to 1 s, buffering up to 8 MiB of outgoing
// messages meanwhile, and keeps trying through authorization errors (a store
// restarting behind Authenticate must not kill every worker). Disconnects,
// reconnects, closes and asynchronous errors (e.g. permission violations) are
// logged. A non-empty user gets the inbox prefix _INBOX.<user>, the only one
// a worker's permissions let it subscribe to. opts are applied last.
func Connect(serverURL, user, pass string, logger *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	if logger == nil {
		logger = slog.Default()
	}
	name := "scanfleet"
	if user != "" {
		name = "scanfleet " + user
	}
	o := []nats.Option{
		nats.Name(name),
		nats.Timeout(5 * time.Second),
		nats.PingInterval(20 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(reconnectBufSize),
		nats.IgnoreAuthErrorAbort(),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats: disconnected", "url", nc.ConnectedUrlRedacted(), "err", err)
			} else {
				logger.Info("nats: disconnected", "url", nc.ConnectedUrlRedacted())
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("nats: reconnected", "url", nc.ConnectedUrlRedacted(), "reconnects", nc.Reconnects)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				logger.Info("nats: connection closed", "err", err)
			}
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Warn("nats: async error", "subject", subject, "err", err)
		}),
	}
	if user != "" {
		o = append(o, nats.UserInfo(user, pass))
		if isToken(user, 128) {
			o = append(o, nats.CustomInboxPrefix(inboxPrefix(user)))
		}
	}
	o = append(o, opts...)
	nc, err := nats.Connect(serverURL, o...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", redact(serverURL), err)
	}
	return nc, nil
}

// redact drops credentials embedded in a URL before it is shown.
func redact(serverURL string) string {
	if u, err := url.Parse(serverURL); err == nil {
		return u.Redacted()
	}
	return "<unparsable url>"
}
