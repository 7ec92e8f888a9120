package cli

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
	sfhttp "github.com/scanfleet/scanfleet/http"
	"github.com/scanfleet/scanfleet/launcher"
	"github.com/scanfleet/scanfleet/scheduler"
)

// launchFlags configure the launcher of "scanfleet server".
type launchFlags struct {
	pools                                   []string
	publicURL, dir, binary                  string
	interval                                time.Duration
	ec2Region, ec2Endpoint, ec2Template     string
	ec2TemplateVersion, ec2Fleet, ec2BinURL string
	ec2Types, ec2Subnets                    []string
	ec2Max                                  int
}

func addLaunchFlags(cmd *cobra.Command) *launchFlags {
	f := &launchFlags{}
	fs := cmd.Flags()
	fs.StringArrayVar(&f.pools, "launch", nil, "start workers on demand for a pool: POOL=BACKEND:MAX[,site=S,idle=D,transport=http|nats,concurrency=N], BACKEND process or ec2 (repeat)")
	fs.StringVar(&f.publicURL, "public-url", "", "the server URL launched workers connect to (default: the listening URL)")
	fs.DurationVar(&f.interval, "launch-interval", 5*time.Second, "how often the launcher compares backlog with live workers")
	fs.StringVar(&f.dir, "launch-dir", "", "where process-launched workers keep their state and logs (default: <data-dir>/workers)")
	fs.StringVar(&f.binary, "launch-binary", "", "the scanfleet binary process-launched workers run (default: this one)")
	fs.StringVar(&f.ec2Region, "ec2-region", "", "AWS region of the ec2 backend (default: the SDK's)")
	fs.StringVar(&f.ec2Endpoint, "ec2-endpoint", "", "EC2 API endpoint URL (for an emulator)")
	fs.StringVar(&f.ec2Template, "ec2-launch-template", "", "launch template id (lt-…) or name for ec2 workers")
	fs.StringVar(&f.ec2TemplateVersion, "ec2-launch-template-version", "", "launch template version (default $Latest)")
	fs.StringSliceVar(&f.ec2Types, "ec2-instance-types", nil, "instance types to try in order when capacity is short")
	fs.StringSliceVar(&f.ec2Subnets, "ec2-subnets", nil, "subnets to try in order after every instance type failed in one")
	fs.IntVar(&f.ec2Max, "ec2-max", 5, "most ec2 workers running at once (mrpf's MAX_BARE_METAL_WORKERS)")
	fs.StringVar(&f.ec2Fleet, "ec2-fleet", "", "tag value that marks this server's instances (default scanfleet)")
	fs.StringVar(&f.ec2BinURL, "ec2-binary-url", "", "where instances download the scanfleet binary (default: already on PATH)")
	return f
}

// startLauncher builds the launcher the --launch flags ask for, or returns
// nil when there are none. It acts only while this replica holds the
// scheduler lease, so replicas do not launch twice.
func startLauncher(ctx context.Context, f *launchFlags, dataDir string, srv *sfhttp.Server, store scanfleet.Store,
	sched *scheduler.Scheduler, logger *slog.Logger) (*launcher.Launcher, func(), error) {
	if len(f.pools) == 0 {
		return nil, func() {}, nil
	}
	pools := map[scanfleet.Pool]launcher.PoolConfig{}
	backends := map[string]launcher.Backend{}
	var stops []func()
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	for _, spec := range f.pools {
		pool, pc, err := launcher.ParsePoolFlag(spec)
		if err != nil {
			return nil, nil, usagef("--launch %q: %v", spec, err)
		}
		pools[pool] = pc
		if backends[pc.Backend] != nil {
			continue
		}
		switch pc.Backend {
		case launcher.ProcessBackend:
			dir := f.dir
			if dir == "" {
				dir = filepath.Join(dataDir, "workers")
			}
			p, err := launcher.NewProcess(launcher.ProcessConfig{Binary: f.binary, Dir: dir})
			if err != nil {
				return nil, nil, err
			}
			backends[pc.Backend] = p
			stops = append(stops, p.Stop)
		case launcher.EC2Backend:
			e, err := launcher.NewEC2(ctx, launcher.EC2Config{Region: f.ec2Region, Endpoint: f.ec2Endpoint,
				LaunchTemplateID: ifPrefix(f.ec2Template, "lt-"), LaunchTemplateName: ifNotPrefix(f.ec2Template, "lt-"),
				LaunchTemplateVersion: f.ec2TemplateVersion, InstanceTypes: f.ec2Types, Subnets: f.ec2Subnets,
				Max: f.ec2Max, Fleet: f.ec2Fleet, BinaryURL: f.ec2BinURL})
			if err != nil {
				return nil, nil, fmt.Errorf("ec2 launcher: %w", err)
			}
			backends[pc.Backend] = e
		default:
			return nil, nil, usagef("--launch %q: backend %q is not process or ec2", spec, pc.Backend)
		}
	}
	url := f.publicURL
	if url == "" {
		url = srv.URL()
	}
	l, err := launcher.New(launcher.Config{
		Pools: pools, Backends: backends, ServerURL: url, Interval: f.interval, Logger: logger,
		Backlog: func(ctx context.Context) (map[scanfleet.Pool]int, error) {
			if !sched.Leading() {
				return map[scanfleet.Pool]int{}, nil // another replica launches
			}
			tasks, _, err := store.ListTasks(ctx, scanfleet.TaskFilter{
				Status: []scanfleet.TaskStatus{scanfleet.TaskCreated, scanfleet.TaskQueued, scanfleet.TaskRequested},
				Page:   scanfleet.Page{Limit: scanfleet.MaxPageLimit}})
			if err != nil {
				return nil, err
			}
			out := map[scanfleet.Pool]int{}
			for _, t := range tasks {
				if pc, ok := pools[t.Pool]; ok && (t.Site == "" || t.Site == pc.Site) {
					out[t.Pool]++
				}
			}
			return out, nil
		},
		Workers: func(ctx context.Context) ([]*scanfleet.Worker, error) { return store.ListWorkers(ctx, time.Now()) },
		NewJoinToken: func(ctx context.Context, pool scanfleet.Pool, site string) (string, error) {
			_, secret, err := srv.NewJoinToken(ctx, "launcher-"+string(pool), string(pool), site, time.Hour)
			return secret, err
		},
	})
	if err != nil {
		stop()
		return nil, nil, usageError{err}
	}
	if err := l.Start(ctx); err != nil {
		stop()
		return nil, nil, err
	}
	return l, func() { l.Stop(); stop() }, nil
}

func ifPrefix(s, p string) string {
	if strings.HasPrefix(s, p) {
		return s
	}
	return ""
}

func ifNotPrefix(s, p string) string {
	if strings.HasPrefix(s, p) {
		return ""
	}
	return s
}
