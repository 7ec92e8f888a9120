package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/attacksurface"
	"github.com/scanfleet/scanfleet/natsbus"
	"github.com/scanfleet/scanfleet/scanner/capture"
	"github.com/scanfleet/scanfleet/scanner/dnsscan"
	"github.com/scanfleet/scanfleet/scanner/execscan"
	"github.com/scanfleet/scanfleet/scanner/httpprobe"
	"github.com/scanfleet/scanfleet/scanner/noop"
	"github.com/scanfleet/scanfleet/scanner/portscan"
	"github.com/scanfleet/scanfleet/scanner/synscan"
	"github.com/scanfleet/scanfleet/scanner/tlsscan"
	"github.com/scanfleet/scanfleet/scanner/traceroute"
	"github.com/scanfleet/scanfleet/worker"
)

// executors returns the built-in executors of this build.
func executors() []scanfleet.Executor {
	return []scanfleet.Executor{
		noop.Executor{},
		attacksurface.Executor{},
		traceroute.New(traceroute.Config{}),
		capture.New(capture.Config{}),
		dnsscan.Executor{},
		tlsscan.Executor{},
		httpprobe.Executor{},
		portscanExecutor(),
		synscan.Executor{},
	}
}

func portscanExecutor() scanfleet.Executor {
	ex, err := portscan.New(portscan.Config{})
	if err != nil {
		panic(err) // a bug in the default config
	}
	return ex
}

// executorsFor returns the executors a worker of pool may run: the
// built-in ones and the external ones given, with the names it announces
// and the task types of the external ones, which the server may not know.
func executorsFor(pool scanfleet.Pool, external []scanfleet.Executor) ([]scanfleet.Executor, []string, []scanfleet.ExecutorType) {
	var (
		ex    []scanfleet.Executor
		names []string
		types []scanfleet.ExecutorType
	)
	for i, e := range append(executors(), external...) {
		if e.TaskType().Pool() == pool {
			ex = append(ex, e)
			names = append(names, e.TaskType().Name)
			if i >= len(executors()) {
				types = append(types, scanfleet.NewExecutorType(e.TaskType()))
			}
		}
	}
	return ex, names, types
}

// loadExternal loads the external executors in dir (empty: none). A bad
// manifest, one that clashes with a built-in type, or one whose declared
// environment variables are not set is reported and skipped; the others
// load.
func loadExternal(dir string, logger *slog.Logger) []scanfleet.Executor {
	if dir == "" {
		return nil
	}
	ms, errs := execscan.LoadDir(dir)
	for _, err := range errs {
		logger.Warn("external executor skipped", slog.Any("err", err))
	}
	builtin := map[string]bool{}
	for _, e := range executors() {
		builtin[e.TaskType().Name] = true
	}
	var out []scanfleet.Executor
	for _, m := range ms {
		if builtin[m.Name] {
			logger.Warn("external executor skipped: a built-in task type has its name", slog.String("name", m.Name))
			continue
		}
		env := map[string]string{}
		for _, name := range m.EnvironmentVariables {
			if v, ok := os.LookupEnv(name); ok {
				env[name] = v
			}
		}
		ex, err := execscan.New(m, execscan.Config{Env: env, Logger: logger.With(slog.String("executor", m.Name))})
		if err != nil {
			logger.Warn("external executor skipped", slog.String("name", m.Name), slog.Any("err", err))
			continue
		}
		out = append(out, ex)
	}
	if len(out) > 0 {
		var names []string
		for _, e := range out {
			names = append(names, e.TaskType().Name)
		}
		logger.Info("external executors loaded", slog.String("dir", dir), slog.Any("names", names))
	}
	return out
}

// workerState is what a worker keeps between runs: its identity and
// credential, written once at enrolment (mode 0600).
type workerState struct {
	Server     string `json:"server"`
	WorkerID   string `json:"worker_id"`
	Credential string `json:"credential"`
	Pool       string `json:"pool"`
	Site       string `json:"site"`
	Transport  string `json:"transport"`
	NATSURL    string `json:"nats_url,omitempty"`
	NATSCA     string `json:"nats_ca,omitempty"`
}

func (a *app) workerCommand() *cobra.Command {
	var (
		server, joinToken, pool, site, transport, stateFile, name, logLevel string
		executorsDir                                                        string
		concurrency                                                         int
		idle, drain, lease                                                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Join a pool and run its tasks",
		Long: `Run a worker. The first start enrols it with a one-time join token (from
"scanfleet worker-token create" or POST /api/v1/worker-tokens) and writes the
worker's own credential to --state-file; later starts reuse it. The worker
announces its pool, site, executors and the capabilities it detected, then takes
tasks over NATS JetStream or, where only HTTP(S) reaches the server, over a long
poll (--transport http). SIGTERM drains it: no new tasks; running ones get
--drain-timeout to finish and are then handed back for another worker.`,
		Example: `  scanfleet worker --server http://10.0.0.1:8080 --join-token sfj_… --pool external --transport http`,
		Args:    cobra.NoArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&server, "server", "http://127.0.0.1:8080", "server URL")
	fs.StringVar(&joinToken, "join-token", "", "one-time join token, needed for the first start only")
	fs.StringVar(&pool, "pool", "external", "pool to join: external, internal or baremetal")
	fs.StringVar(&site, "site", "", "network location; the worker takes tasks of this site and of no site")
	fs.StringVar(&transport, "transport", "http", "nats or http (long poll)")
	fs.StringVar(&stateFile, "state-file", "scanfleet-worker.json", "where the worker keeps its credential")
	fs.StringVar(&name, "name", "", "worker name (default: the host name)")
	fs.IntVar(&concurrency, "concurrency", 4, "tasks run at once")
	fs.DurationVar(&idle, "idle-timeout", 0, "exit 0 after this long without a task (0: never)")
	fs.DurationVar(&drain, "drain-timeout", 0, "on SIGTERM, how long running tasks may go on before they are handed back")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&executorsDir, "executors-dir", "", "directory of external executors (one subdirectory with a manifest.json each; see executors/README.md)")
	fs.DurationVar(&lease, "task-lease", scanfleet.DefaultLease, "the server's --task-lease; the worker renews at a third of it")
	envHelp(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var level slog.Level
		if err := level.UnmarshalText([]byte(logLevel)); err != nil {
			return usagef("--log-level %q is not debug, info, warn or error", logLevel)
		}
		logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
		p, err := scanfleet.ParsePool(pool)
		if err != nil {
			return usagef("--pool %q is not external, internal or baremetal", pool)
		}
		if transport != "http" && transport != "nats" {
			return usagef("--transport %q is not nats or http", transport)
		}
		if name == "" {
			name, _ = os.Hostname()
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		ex, names, types := executorsFor(p, loadExternal(executorsDir, logger))
		caps := worker.DetectCapabilities()
		st, enrolled, err := loadOrEnrol(ctx, stateFile, worker.EnrolRequest{
			JoinToken: joinToken, Name: name, Pool: p, Site: site, Version: version(),
			Capabilities: caps, Executors: names, Types: types, Transport: transport, Concurrency: concurrency,
		}, server)
		if err != nil {
			return err
		}
		client := worker.NewClient(st.Server, st.Credential)
		if !enrolled {
			// A known worker starting again says what it has now.
			err := client.Announce(ctx, scanfleet.Announcement{Version: version(), Capabilities: caps, Executors: names, Types: types})
			if err != nil {
				return fmt.Errorf("announce to %s: %w", st.Server, err)
			}
		}
		src, closeSrc, err := newSource(ctx, st, client, logger)
		if err != nil {
			return err
		}
		defer closeSrc()
		w, err := worker.New(worker.Config{
			Client: client, WorkerID: st.WorkerID, Source: src, Executors: ex,
			Concurrency: concurrency, IdleTimeout: idle, DrainTimeout: drain, Lease: lease, Logger: logger,
		})
		if err != nil {
			return usageError{err}
		}
		fmt.Fprintf(a.stdout, "worker %s (%s, pool %s, site %q, transport %s) running %v\n", st.WorkerID, name, p, site, st.Transport, names)
		return w.Run(ctx)
	}
	return cmd
}

// loadOrEnrol reads the worker's state file, or enrols with the join token
// and writes it.
func loadOrEnrol(ctx context.Context, path string, req worker.EnrolRequest, server string) (st *workerState, enrolled bool, err error) {
	if b, err := os.ReadFile(path); err == nil {
		st = &workerState{}
		if err := json.Unmarshal(b, st); err != nil {
			return nil, false, fmt.Errorf("read %s: %w", path, err)
		}
		if st.Pool != string(req.Pool) || st.Site != req.Site || st.Transport != req.Transport {
			return nil, false, usagef("%s holds a worker of pool %s, site %q, transport %s; remove it to enrol anew", path, st.Pool, st.Site, st.Transport)
		}
		return st, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	if req.JoinToken == "" {
		return nil, false, usagef("no %s yet: pass --join-token for the first start (scanfleet worker-token create)", path)
	}
	resp, err := worker.Enrol(ctx, server, req)
	if err != nil {
		return nil, false, err
	}
	st = &workerState{Server: server, WorkerID: resp.WorkerID, Credential: resp.Credential, Pool: string(req.Pool), Site: req.Site, Transport: req.Transport}
	if resp.NATS != nil {
		st.NATSURL, st.NATSCA = resp.NATS.URL, resp.NATS.CA
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, err
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, false, fmt.Errorf("save the worker's credential: %w", err)
	}
	return st, true, nil
}

func (a *app) workerTokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "worker-token", Aliases: []string{"worker-tokens"}, Short: "Create, list and revoke one-time join tokens for workers"}
	var name, pool, site, ttl string
	create := &cobra.Command{Use: "create", Short: "Create a join token and print it once", Args: cobra.NoArgs}
	o := addClientFlags(create)
	create.Flags().StringVar(&name, "name", "worker", "a name for the token")
	create.Flags().StringVar(&pool, "pool", "", "pin the pool the worker may join")
	create.Flags().StringVar(&site, "site", "", "pin the site the worker may join")
	create.Flags().StringVar(&ttl, "ttl", "24h", "how long the token may be used")
	envHelp(create.Flags())
	create.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		var res map[string]any
		body := map[string]any{"name": name, "pool": pool, "site": site, "ttl": ttl}
		if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/worker-tokens", body, &res); err != nil {
			return err
		}
		if o.output == "json" {
			return printOne(a.stdout, "json", res, nil)
		}
		fmt.Fprintln(a.stdout, res["token"])
		fmt.Fprintf(a.stderr, "join token %v expires %v; it enrols one worker and is shown only once\n", res["id"], res["expires_at"])
		return nil
	}
	cmd.AddCommand(create)

	lst := &cobra.Command{Use: "list", Short: "List join tokens (never their secrets) and who used them", Args: cobra.NoArgs}
	lo := addClientFlags(lst)
	envHelp(lst.Flags())
	lst.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := lo.client()
		if err != nil {
			return err
		}
		tokens, _, err := list[*scanfleet.JoinToken](cmd.Context(), c, "/api/v1/worker-tokens", url.Values{}, false)
		if err != nil {
			return err
		}
		t := &table{headers: []string{"ID", "NAME", "POOL", "SITE", "EXPIRES", "USED", "WORKER"}}
		for _, jt := range tokens {
			t.add(jt, jt.ID, jt.Name, orDash(string(jt.Pool)), orDash(jt.Site), fmtTime(&jt.ExpiresAt), fmtTime(jt.UsedAt), orDash(jt.WorkerID))
		}
		return t.print(a.stdout, lo.output)
	}
	cmd.AddCommand(lst)

	rev := a.revokeCommand("Revoke a join token before it is used", "/api/v1/worker-tokens/", "join token")
	cmd.AddCommand(rev)
	return cmd
}

func (a *app) workersCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "workers", Short: "List workers and their state", Args: cobra.NoArgs}
	o := addClientFlags(cmd)
	envHelp(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		workers, _, err := list[*scanfleet.Worker](cmd.Context(), c, "/api/v1/workers", url.Values{}, false)
		if err != nil {
			return err
		}
		t := &table{headers: []string{"ID", "NAME", "POOL", "SITE", "STATE", "RUNNING", "TRANSPORT", "LAST SEEN"}}
		for _, w := range workers {
			t.add(w, w.ID, w.Name, string(w.Pool), orDash(w.Site), string(w.State), fmt.Sprintf("%d/%d", w.Running, w.Concurrency), w.Transport, fmtTime(&w.LastSeenAt))
		}
		return t.print(a.stdout, o.output)
	}
	rev := a.revokeCommand("Revoke a worker: its credential stops working and its tasks go to other workers", "/api/v1/workers/", "worker")
	cmd.AddCommand(rev)
	return cmd
}

// revokeCommand is "revoke ID": DELETE path+ID, then a line saying what
// was revoked.
func (a *app) revokeCommand(short, path, what string) *cobra.Command {
	cmd := &cobra.Command{Use: "revoke ID", Short: short, Args: cobra.ExactArgs(1)}
	o := addClientFlags(cmd)
	envHelp(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		if err := c.do(cmd.Context(), http.MethodDelete, path+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "%s %s revoked\n", what, args[0])
		return nil
	}
	return cmd
}

func (a *app) launchesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "launches", Short: "List the launcher's attempts to start workers, newest first", Args: cobra.NoArgs}
	o := addClientFlags(cmd)
	envHelp(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		var res struct {
			Items []map[string]any `json:"items"`
			Pools []map[string]any `json:"pools"`
		}
		if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/launches", nil, &res); err != nil {
			return err
		}
		if o.output == "json" {
			return printOne(a.stdout, "json", res, nil)
		}
		t := &table{headers: []string{"TIME", "POOL", "BACKEND", "OUTCOME", "INSTANCE", "WORKER", "ERROR"}}
		for _, at := range res.Items {
			t.add(at, str(at["time"]), str(at["pool"]), str(at["backend"]), str(at["outcome"]), str(at["instance"]), str(at["worker_id"]), str(at["error"]))
		}
		return t.print(a.stdout, o.output)
	}
	return cmd
}

// newSource returns the worker's transport.
func newSource(ctx context.Context, st *workerState, client *worker.Client, logger *slog.Logger) (worker.Source, func(), error) {
	switch st.Transport {
	case "http":
		return worker.HTTPSource{Client: client}, func() {}, nil
	case "nats":
		if st.NATSURL == "" {
			return nil, nil, fmt.Errorf("the server gave no NATS URL at enrolment (it runs without NATS): use --transport http")
		}
		trust, err := natsbus.TrustPEM(st.NATSCA)
		if err != nil {
			return nil, nil, err
		}
		var opts []nats.Option
		if trust != nil {
			opts = append(opts, trust)
		}
		return worker.DialNATS(ctx, st.NATSURL, st.Credential, natsbus.ConsumerConfig{WorkerID: st.WorkerID, Pool: st.Pool, Site: st.Site}, logger, opts...)
	}
	return nil, nil, fmt.Errorf("transport %q is not nats or http", st.Transport)
}
