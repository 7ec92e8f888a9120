package natsbus

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerUser is the user name of the scanfleet server's own connections to
// the embedded NATS server; it has every permission. Worker ids must differ
// from it (they are UUIDs).
const ServerUser = "scanfleet-server"

// ServerConfig configures the embedded NATS server.
type ServerConfig struct {
	// Addr is the host:port clients connect to. Port -1 picks a free port
	// (tests). Default "127.0.0.1:4223", since 4222 may be taken.
	Addr string
	// StoreDir is the JetStream storage directory. Empty means a temporary
	// directory removed at Shutdown: nothing survives a restart (tests; use
	// BusConfig.MemoryStorage too). Default "".
	StoreDir string
	// Authenticate checks a worker's credential: user is the worker id and
	// pass its secret. It returns the worker's pool and site ("" for none).
	// It is called once per connection, on the connection's goroutine, so it
	// may block briefly on the store. Required.
	Authenticate func(user, pass string) (pool, site string, ok bool)
	// ServerPassword is the password of ServerUser. Default: 32 random
	// bytes, hex-encoded, new at each start.
	ServerPassword string
	// Stream is the name of the dispatch stream, used to scope workers'
	// permissions. Default DefaultStream.
	Stream string
	// SubjectPrefix is the first token(s) of task and command subjects,
	// used to scope workers' permissions. Default DefaultSubjectPrefix.
	SubjectPrefix string
	// ServerName names the NATS server in logs and monitoring.
	// Default "scanfleet".
	ServerName string
	// TLS, when set, makes clients on TCP connect with TLS (the server's
	// certificate); in-process connections are not affected. Default: none.
	TLS *tls.Config
	// Logger receives the NATS server's log lines. Default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c ServerConfig) WithDefaults() ServerConfig {
	c.Addr = cmp.Or(c.Addr, "127.0.0.1:4223")
	c.Stream = cmp.Or(c.Stream, DefaultStream)
	c.SubjectPrefix = cmp.Or(c.SubjectPrefix, DefaultSubjectPrefix)
	c.ServerName = cmp.Or(c.ServerName, "scanfleet")
	if c.ServerPassword == "" {
		c.ServerPassword = randomSecret()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c ServerConfig) validate() error {
	if _, _, err := splitAddr(c.Addr); err != nil {
		return fmt.Errorf("Addr: %w", err)
	}
	if c.Authenticate == nil {
		return errors.New("Authenticate: is nil")
	}
	if len(c.ServerPassword) < 16 {
		return errors.New("ServerPassword: is shorter than 16 characters")
	}
	return names{c.Stream, c.SubjectPrefix}.validate()
}

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	return host, port, nil
}

// Server is an embedded nats-server with JetStream that admits only the
// scanfleet server itself and authenticated workers.
type Server struct {
	ns      *server.Server
	cfg     ServerConfig
	tempDir string // removed at Shutdown when StoreDir was empty
}

// StartServer starts the embedded NATS server and waits until it accepts
// connections. ctx bounds only the start; the server runs until Shutdown.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("nats server config: %w", err)
	}
	host, port, _ := splitAddr(cfg.Addr)
	s := &Server{cfg: cfg}
	storeDir := cfg.StoreDir
	if storeDir == "" {
		dir, err := os.MkdirTemp("", "scanfleet-nats-*")
		if err != nil {
			return nil, fmt.Errorf("nats server: %w", err)
		}
		s.tempDir, storeDir = dir, dir
	}
	opts := &server.Options{
		ServerName:                 cfg.ServerName,
		Host:                       host,
		Port:                       port,
		JetStream:                  true,
		StoreDir:                   storeDir,
		NoSigs:                     true,
		NoSystemAccount:            true,
		CustomClientAuthentication: &authenticator{cfg: cfg, n: names{cfg.Stream, cfg.SubjectPrefix}, log: cfg.Logger},
	}
	if cfg.TLS != nil {
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = cfg.TLS, true, 5
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		s.removeTemp()
		return nil, fmt.Errorf("nats server: %w", err)
	}
	debug := cfg.Logger.Enabled(ctx, slog.LevelDebug)
	fatal := make(chan string, 1)
	ns.SetLoggerV2(slogAdapter{l: cfg.Logger, fatal: fatal}, debug, false, false)
	ns.Start()
	s.ns = ns

	// Wait until ready, but give up at once on a fatal error (e.g. the
	// address is taken) instead of at the end of the wait.
	deadline := time.Now().Add(10 * time.Second)
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl
	}
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-fatal:
			s.Shutdown()
			return nil, fmt.Errorf("nats server: %s", msg)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Shutdown()
			return nil, errors.New("nats server: not ready for connections")
		}
	}
	if !ns.JetStreamEnabled() {
		s.Shutdown()
		return nil, errors.New("nats server: JetStream did not start")
	}
	return s, nil
}

// ClientURL is the URL workers connect to, with the port actually bound.
func (s *Server) ClientURL() string {
	if a, ok := s.ns.Addr().(*net.TCPAddr); ok {
		host, _, _ := splitAddr(s.cfg.Addr)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		scheme := "nats://"
		if s.cfg.TLS != nil {
			scheme = "tls://"
		}
		return scheme + net.JoinHostPort(host, strconv.Itoa(a.Port))
	}
	return s.ns.ClientURL()
}

// Credentials are the user and password of the scanfleet server's own
// connections, for a Connect over TCP (e.g. from another local process).
func (s *Server) Credentials() (user, pass string) { return ServerUser, s.cfg.ServerPassword }

// InternalConn opens a new in-process connection (no TCP) as ServerUser.
// The caller closes it. It does not survive a Shutdown of this Server: the
// scanfleet server and its embedded NATS server live and die together.
func (s *Server) InternalConn() (*nats.Conn, error) {
	nc, err := nats.Connect("",
		nats.InProcessServer(s.ns),
		nats.UserInfo(ServerUser, s.cfg.ServerPassword),
		nats.Name(ServerUser),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(reconnectBufSize),
	)
	if err != nil {
		return nil, fmt.Errorf("nats internal connect: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server, closing every client connection, and waits
// until it has stopped. It is safe to call more than once.
func (s *Server) Shutdown() {
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
	s.removeTemp()
}

func (s *Server) removeTemp() {
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
}

// authenticator is the nats-server custom authentication hook: it admits
// ServerUser with every permission and workers with the permissions of their
// pool and site, nothing else.
type authenticator struct {
	cfg ServerConfig
	n   names
	log *slog.Logger
}

// Check implements server.Authentication.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	user, pass := o.Username, o.Password
	remote := ""
	if addr := c.RemoteAddress(); addr != nil {
		remote = addr.String()
	}
	if user == ServerUser {
		if subtle.ConstantTimeCompare([]byte(pass), []byte(a.cfg.ServerPassword)) != 1 {
			a.log.Warn("nats: server credential refused", "remote", remote)
			return false
		}
		c.RegisterUser(&server.User{Username: ServerUser})
		return true
	}
	if user == "" || pass == "" {
		a.log.Info("nats: anonymous connection refused", "remote", remote)
		return false
	}
	// The id becomes part of permission subjects: refuse anything that is
	// not a plain token before asking the store.
	if validateWorkerID("user", user) != nil {
		a.log.Info("nats: malformed worker id refused", "remote", remote)
		return false
	}
	pool, site, ok := a.cfg.Authenticate(user, pass)
	if !ok {
		a.log.Info("nats: worker credential refused", "worker", user, "remote", remote)
		return false
	}
	if validatePool("pool", pool) != nil || validateSite("site", site) != nil {
		a.log.Error("nats: Authenticate returned a bad pool or site", "worker", user, "pool", pool, "site", site)
		return false
	}
	c.RegisterUser(&server.User{Username: user, Permissions: WorkerPermissions(a.n.stream, a.n.prefix, user, pool, site)})
	return true
}

// WorkerPermissions are the permissions of a worker of pool and site ("" for
// none) on stream/prefix: pull from, ack and read the info of its own
// consumers, receive replies on its own inbox and its own commands, answer
// commands. It may not publish dispatches, manage streams or consumers, or
// touch another pool's or site's consumer. Exported so that an operator of an
// external NATS server can mirror them in its configuration.
func WorkerPermissions(stream, prefix, workerID, pool, site string) *server.Permissions {
	var pub []string
	for _, c := range consumersFor(pool, site) {
		pub = append(pub,
			"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+c,
			"$JS.API.CONSUMER.INFO."+stream+"."+c,
			"$JS.ACK."+stream+"."+c+".>",
			// The v2 ack subject ($JS.ACK.<domain>.<account>.<stream>...),
			// behind a feature flag in nats-server 2.14+.
			"$JS.ACK.*.*."+stream+"."+c+".>",
		)
	}
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{
			inboxPrefix(workerID) + ".>",
			names{stream, prefix}.cmdSubject(workerID),
		}},
		// Lets the worker answer a command request (its reply subject).
		Response: &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute},
	}
}

// slogAdapter routes nats-server log lines into slog. A fatal line (the
// server stops) is also handed to StartServer through fatal.
type slogAdapter struct {
	l     *slog.Logger
	fatal chan<- string
}

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Info("nats: " + fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn("nats: " + fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error("nats: " + fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug("nats: " + fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  {}
func (a slogAdapter) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	a.l.Error("nats: " + msg)
	select {
	case a.fatal <- msg:
	default:
	}
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Disconnect closes every connection of user, a revoked worker: its
// reconnects then fail authentication. It returns how many it closed.
func (s *Server) Disconnect(user string) (int, error) {
	cz, err := s.ns.Connz(&server.ConnzOptions{User: user, Username: true, Limit: 1024})
	if err != nil {
		return 0, fmt.Errorf("list connections of %s: %w", user, err)
	}
	n := 0
	for _, c := range cz.Conns {
		if c.AuthorizedUser != user {
			continue
		}
		if err := s.ns.DisconnectClientByID(c.Cid); err == nil {
			n++
		}
	}
	return n, nil
}
