package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
	sfhttp "github.com/scanfleet/scanfleet/http"
	"github.com/scanfleet/scanfleet/launcher"
	"github.com/scanfleet/scanfleet/postgres"
	"github.com/scanfleet/scanfleet/router"
	"github.com/scanfleet/scanfleet/scheduler"
	"github.com/scanfleet/scanfleet/sqlite"
)

// storeFlags pick the store: PostgreSQL when --database-url is set, else
// SQLite in --data-dir.
type storeFlags struct {
	dataDir     string
	databaseURL string
}

func addStoreFlags(cmd *cobra.Command) *storeFlags {
	f := &storeFlags{}
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "./scanfleet-data", "directory for the SQLite database and other state")
	cmd.Flags().StringVar(&f.databaseURL, "database-url", "", "postgres://… URL to use PostgreSQL instead of SQLite")
	return f
}

// describe says which store the flags pick, without any password.
func (f *storeFlags) describe() string {
	if f.databaseURL != "" {
		return "PostgreSQL"
	}
	return "SQLite in " + f.dataDir
}

func (f *storeFlags) open(ctx context.Context) (scanfleet.Store, error) {
	if f.databaseURL != "" {
		if !strings.HasPrefix(f.databaseURL, "postgres://") && !strings.HasPrefix(f.databaseURL, "postgresql://") {
			return nil, usagef("--database-url must be a postgres:// URL")
		}
		return postgres.Open(ctx, postgres.Config{URL: f.databaseURL})
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	return sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(f.dataDir, "scanfleet.db")})
}

// registry returns the task types this build knows: those of its built-in
// executors and of the external ones given.
func registry(external ...scanfleet.Executor) *scanfleet.Registry {
	var types []*scanfleet.TaskType
	for _, e := range append(executors(), external...) {
		types = append(types, e.TaskType())
	}
	reg, err := scanfleet.NewRegistry(types...)
	if err != nil {
		panic(err) // a bug in a built-in task type
	}
	return reg
}

func (a *app) serverCommand() *cobra.Command {
	var (
		addr             string
		maxBody          int64
		maxLine          int
		logLevel         string
		shutdownWait     time.Duration
		localWorkersOn   bool
		localConcurrency int
		lease            time.Duration
		natsOn           bool
		natsAddr         string
		natsURL          string
		schedInterval    time.Duration
		executorsDir     string
		natsTLSFiles     natsTLS
		maxActive        []string
		maxActiveTotal   int
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the scanfleet server",
		Long: `Run the scanfleet server: the REST API under /api/v1 and metrics under /metrics.

With no flags it is complete on one machine: SQLite in ./scanfleet-data and
HTTP on 127.0.0.1:8080. On first start with an empty store it creates an
admin API token and prints it once.`,
		Args: cobra.NoArgs,
	}
	sf := addStoreFlags(cmd)
	lf := addLaunchFlags(cmd)
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to serve HTTP on (port 0 picks a free one)")
	cmd.Flags().Int64Var(&maxBody, "max-body-bytes", scanfleet.DefaultMaxBodyBytes, "largest request body accepted")
	cmd.Flags().IntVar(&maxLine, "max-line-bytes", scanfleet.DefaultMaxLineBytes, "longest JSON Lines line accepted")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().DurationVar(&shutdownWait, "shutdown-timeout", 10*time.Second, "how long to wait for requests in flight on shutdown")
	cmd.Flags().BoolVar(&localWorkersOn, "local-workers", true, "run one in-process worker per pool")
	cmd.Flags().BoolVar(&natsOn, "nats", true, "dispatch tasks over NATS JetStream (embedded unless --nats-url); false leaves only the HTTP long poll")
	cmd.Flags().StringVar(&natsAddr, "nats-addr", "127.0.0.1:4223", "address of the embedded NATS server that workers connect to (port -1 picks a free one)")
	cmd.Flags().StringVar(&natsTLSFiles.cert, "nats-tls-cert", "", "PEM certificate of the embedded NATS server: workers then connect with TLS (tls://)")
	cmd.Flags().StringVar(&natsTLSFiles.key, "nats-tls-key", "", "PEM private key of --nats-tls-cert")
	cmd.Flags().StringVar(&natsTLSFiles.ca, "nats-tls-ca", "", "PEM CA that signed --nats-tls-cert, sent to workers at enrolment (default: the certificate itself, for a self-signed one)")
	cmd.Flags().StringVar(&natsURL, "nats-url", "", "nats://… URL of an external NATS cluster with JetStream, instead of the embedded server")
	cmd.Flags().DurationVar(&lease, "task-lease", scanfleet.DefaultLease, "how long a worker holds a task without renewing it; a lapsed lease puts the task back for another attempt")
	cmd.Flags().IntVar(&localConcurrency, "local-concurrency", 4, "tasks each in-process worker runs at once")
	cmd.Flags().StringVar(&executorsDir, "executors-dir", "", "directory of external executors for the in-process workers (see executors/README.md)")
	cmd.Flags().DurationVar(&schedInterval, "schedule-interval", 5*time.Second, "how often the scheduler looks for scans that are due")
	cmd.Flags().StringSliceVar(&maxActive, "max-active", nil, "most tasks a pool may have routed or running at once, e.g. baremetal=5 (repeat); more wait queued")
	cmd.Flags().IntVar(&maxActiveTotal, "max-active-total", 0, "most tasks routed or running at once over all pools; 0 is no limit")
	envHelp(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var level slog.Level
		if err := level.UnmarshalText([]byte(logLevel)); err != nil {
			return usagef("--log-level %q is not debug, info, warn or error", logLevel)
		}
		logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()

		store, err := sf.open(ctx)
		if err != nil {
			return fmt.Errorf("open store (%s): %w", sf.describe(), err)
		}
		defer store.Close()
		caps, err := parsePoolCounts("--max-active", maxActive)
		if err != nil {
			return err
		}
		var rt *router.Router
		// Set once the server runs; read by request handlers meanwhile.
		var launch atomic.Pointer[launcher.Launcher]
		var srv *sfhttp.Server
		wake := func(tasks []*scanfleet.Task) {
			rt.Submit(tasks)
			if l := launch.Load(); l != nil {
				l.Wake()
			}
		}
		external := loadExternal(executorsDir, logger)
		reg := registry(external...)
		sched, err := scheduler.New(store, reg, scheduler.Config{Interval: schedInterval, MaxActive: caps,
			MaxActiveTotal: maxActiveTotal, TasksCreated: wake, Logger: logger,
			ReloadTypes: func(ctx context.Context) error { return srv.RegisterWorkerTypes(ctx) }})
		if err != nil {
			return usageError{err}
		}
		hcfg := sfhttp.Config{
			Addr: addr, MaxBodyBytes: maxBody, MaxLineBytes: maxLine, Version: version(), Logger: logger,
			TasksCreated: wake, Lease: lease, RunScan: sched.RunNow,
			Launches: func() ([]launcher.Attempt, []launcher.PoolState) {
				l := launch.Load()
				if l == nil {
					return nil, nil
				}
				return l.Attempts(), l.Pools()
			},
		}
		rcfg := router.Config{Logger: logger}
		var queue *natsQueue
		if natsOn {
			if queue, err = startNATS(ctx, natsAddr, natsURL, filepath.Join(sf.dataDir, "nats"), natsTLSFiles, store, lease, logger); err != nil {
				return err
			}
			defer queue.Close()
			hcfg.WorkerNATSURL, hcfg.WorkerNATSCA = queue.url, queue.ca
			hcfg.Commands, hcfg.OnEnrol, hcfg.OnRevoke = queue, queue.OnEnrol, queue.OnRevoke
			rcfg.Dispatcher = queue
		}
		srv, err = sfhttp.NewServer(store, reg, hcfg)
		if err != nil {
			return usageError{err}
		}
		rcfg.Notify = srv.NotifyPool
		if rt, err = router.New(store, rcfg); err != nil {
			return err
		}
		if err := srv.RegisterWorkerTypes(ctx); err != nil {
			return fmt.Errorf("register the task types workers announced: %w", err)
		}
		if err := srv.Start(ctx); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "scanfleet %s listening on %s (store: %s)\n", version(), srv.URL(), sf.describe())
		if queue != nil {
			fmt.Fprintf(a.stdout, "workers' task queue: NATS JetStream at %s\n", queue.url)
		}
		// A signal during start-up must not turn into an error: the token
		// step runs to its end, then the server stops normally.
		bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		err = a.bootstrapToken(bctx, store, srv.URL())
		bcancel()
		if err != nil {
			_ = srv.Stop(context.Background())
			return err
		}
		if err := rt.Start(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		defer rt.Stop()
		if err := sched.Start(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		defer sched.Stop()
		l, stopLaunch, err := startLauncher(context.WithoutCancel(ctx), lf, sf.dataDir, srv, store, sched, logger)
		if err != nil {
			_ = srv.Stop(context.Background())
			return err
		}
		launch.Store(l)
		var stopOnce sync.Once
		stopLaunched := func() { stopOnce.Do(stopLaunch) }
		defer stopLaunched()
		var lw *localWorkers
		if localWorkersOn {
			qurl, qca := "", ""
			if queue != nil {
				qurl, qca = queue.url, queue.ca
			}
			if lw, err = startLocalWorkers(context.WithoutCancel(ctx), srv, store, sf.dataDir, localConcurrency, lease, qurl, qca, external, logger); err != nil {
				_ = srv.Stop(context.Background())
				return err
			}
		}
		<-ctx.Done()
		logger.Info("shutting down")
		stopLaunched() // launched workers drain while the API is still up
		if lw != nil {
			lw.Stop() // drains: running tasks are handed back while the API is still up
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		return srv.Stop(sctx)
	}
	return cmd
}

// parsePoolCounts reads "pool=N" pairs of a flag.
func parsePoolCounts(flag string, pairs []string) (map[scanfleet.Pool]int, error) {
	out := map[scanfleet.Pool]int{}
	for _, pair := range pairs {
		name, n, ok := strings.Cut(pair, "=")
		pool, err := scanfleet.ParsePool(name)
		if !ok || err != nil {
			return nil, usagef("%s %q is not pool=N with pool external, internal or baremetal", flag, pair)
		}
		v, err := strconv.Atoi(n)
		if err != nil || v < 0 {
			return nil, usagef("%s %q: %q is not a count", flag, pair, n)
		}
		out[pool] = v
	}
	return out, nil
}

// bootstrapToken creates and prints an admin token when the store has none,
// so that a fresh server can be used at once. The secret is shown only here.
func (a *app) bootstrapToken(ctx context.Context, store scanfleet.Store, url string) error {
	n, err := store.CountTokens(ctx)
	if err != nil || n > 0 {
		return err
	}
	tok, secret, err := scanfleet.NewToken("bootstrap-admin", scanfleet.RoleAdmin, time.Now())
	if err != nil {
		return err
	}
	if err := store.CreateToken(ctx, tok); err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	fmt.Fprintf(a.stdout, "\nAdmin API token (shown once; store it now): %s\n", secret)
	fmt.Fprintf(a.stdout, "Try: curl -H 'Authorization: Bearer %s' %s/api/v1/workspaces\n", secret, url)
	fmt.Fprintf(a.stdout, "Or:  export SCANFLEET_SERVER=%s SCANFLEET_TOKEN=%s; scanfleet workspace list\n\n", url, secret)
	return nil
}
