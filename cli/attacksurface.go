package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/attacksurface"
)

func (a *app) attackSurfaceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "attack-surface",
		Aliases: []string{"as"},
		Short:   "Which VMs can attack which: a cloud environment's attack surface",
		Long: `Answer "which VMs can attack VM X" for a cloud environment of VMs with tags and
firewall rules between tags (surfacescan's question). "serve" runs a standalone,
surfacescan-compatible API over a directory of environment files; "upload" and
"query" use a workspace's environment on a scanfleet server.`,
	}
	cmd.AddCommand(a.asServeCommand(), a.asGenCommand(), a.asUploadCommand(), a.asQueryCommand())
	return cmd
}

func (a *app) asServeCommand() *cobra.Command {
	var data, addr string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the standalone attack-surface API (no auth) over a file or directory of environments",
		Long: `Serve GET /api/v1/attack?vm_id=… and GET /api/v1/stats (also /attack and /stats)
without authentication, as surfacescan does, over the environment in --data: one
JSON file, or a directory whose *.json files are merged. Bind it to loopback or a
trusted network only.`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().StringVar(&data, "data", "", "environment file or directory of *.json files (required)")
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8001", "address to listen on")
	envHelp(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if data == "" {
			return usagef("--data is required: an environment file or a directory of them")
		}
		start := time.Now()
		env, err := loadEnv(data)
		if err != nil {
			return err
		}
		g, err := attacksurface.Build(env)
		if err != nil {
			return err
		}
		logger := slog.New(slog.NewTextHandler(a.stderr, nil))
		logger.Info("environment loaded", "vms", len(env.VMs), "rules", len(env.Rules), "took", time.Since(start).Round(time.Millisecond))
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return attacksurface.Serve(ctx, addr, g, logger, func(ad net.Addr) {
			fmt.Fprintf(a.stdout, "attack-surface API listening on http://%s (%d VMs)\n", ad, g.VMCount())
		})
	}
	return cmd
}

func loadEnv(path string) (*attacksurface.Env, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return attacksurface.LoadDir(path)
	}
	return attacksurface.LoadFile(path)
}

func (a *app) asGenCommand() *cobra.Command {
	var cfg attacksurface.GenConfig
	var out string
	cmd := &cobra.Command{
		Use:   "gen",
		Short: "Write a random environment with surfacescan's distribution",
		Long: `Write a random cloud environment: --tags distinct tags of 2-5 letters, each VM
carrying 0-5 of them drawn uniformly, --rules rules with a uniform source and
destination tag. The same --seed writes the same environment.`,
		Example: `  scanfleet attack-surface gen --vms 100000 --tags 1000 --rules 10000 --seed 1 -o env.json`,
		Args:    cobra.NoArgs,
	}
	cmd.Flags().IntVar(&cfg.VMs, "vms", 1000, "number of VMs")
	cmd.Flags().IntVar(&cfg.Tags, "tags", 100, "number of distinct tags")
	cmd.Flags().IntVar(&cfg.Rules, "rules", 1000, "number of firewall rules")
	cmd.Flags().Int64Var(&cfg.Seed, "seed", 1, "random seed")
	cmd.Flags().StringVarP(&out, "output", "o", "-", "file to write, - for standard output")
	envHelp(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if cfg.VMs < 0 || cfg.Tags < 0 || cfg.Rules < 0 {
			return usagef("--vms, --tags and --rules must not be negative")
		}
		if cfg.Rules > 0 && cfg.Tags == 0 {
			return usagef("--rules needs at least one tag (--tags)")
		}
		w := a.stdout
		if out != "-" {
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			defer f.Close()
			bw := bufio.NewWriterSize(f, 1<<20)
			if err := attacksurface.Generate(cfg).WriteJSON(bw); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			return f.Close()
		}
		return attacksurface.Generate(cfg).WriteJSON(w)
	}
	return cmd
}

func (a *app) asUploadCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "upload WORKSPACE FILE|DIR",
		Short: "Replace a workspace's cloud environment on the server",
		Args:  cobra.ExactArgs(2),
	}
	o := addClientFlags(cmd)
	envHelp(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		// Validate and merge locally first: a directory becomes one document,
		// and a mistake is reported with its file and line before upload.
		env, err := loadEnv(args[1])
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := env.WriteJSON(&buf); err != nil {
			return err
		}
		var res scanfleet.CloudEnv
		path := "/api/v1/workspaces/" + url.PathEscape(args[0]) + "/cloud"
		if err := c.do(cmd.Context(), http.MethodPut, path, rawBody{r: &buf, contentType: "application/json"}, &res); err != nil {
			return err
		}
		t := &table{headers: []string{"WORKSPACE", "VMS", "RULES", "UPDATED"}}
		t.add(res, res.Workspace, fmt.Sprint(res.VMCount), fmt.Sprint(res.RuleCount), fmtTime(&res.UpdatedAt))
		return printOne(a.stdout, o.output, res, t)
	}
	return cmd
}

func (a *app) asQueryCommand() *cobra.Command {
	var mode string
	cmd := &cobra.Command{
		Use:   "query WORKSPACE VM_ID",
		Short: "List the VMs that can attack a VM of a workspace's cloud environment",
		Args:  cobra.ExactArgs(2),
	}
	o := addClientFlags(cmd)
	cmd.Flags().StringVar(&mode, "mode", "transitive", "transitive (lateral movement), direct (one hop) or tag (surfacescan's tag closure)")
	envHelp(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := o.client()
		if err != nil {
			return err
		}
		ids, err := queryAttack(cmd.Context(), c, args[0], args[1], mode)
		if err != nil {
			return err
		}
		t := &table{headers: []string{"ATTACKER"}}
		for _, id := range ids {
			t.add(id, id)
		}
		if o.output == "json" {
			return printOne(a.stdout, "json", ids, nil)
		}
		return t.print(a.stdout, o.output)
	}
	return cmd
}

func queryAttack(ctx context.Context, c *client, ws, vm, mode string) ([]string, error) {
	var raw json.RawMessage
	q := url.Values{"vm_id": {vm}, "mode": {mode}}
	if err := c.do(ctx, http.MethodGet, "/api/v1/workspaces/"+url.PathEscape(ws)+"/attack?"+q.Encode(), nil, &raw); err != nil {
		return nil, err
	}
	var ids []string
	return ids, json.Unmarshal(raw, &ids)
}
