package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
)

func scanTable(items ...*scanfleet.Scan) *table {
	t := &table{headers: []string{"ID", "NAME", "TYPE", "WORKSPACES", "SCHEDULE", "ENABLED", "LAST RUN"}}
	for _, s := range items {
		sched := "manual"
		if s.Frequency != 0 {
			sched = "every " + s.Frequency.String()
		} else if s.Cron != "" {
			sched = "cron " + s.Cron
		}
		if s.SingleRun {
			sched += " (once)"
		}
		t.add(s, s.ID, s.Name, s.Type, strings.Join(s.Workspaces, ","), sched, fmt.Sprint(s.Enabled), fmtTime(s.LastRunAt))
	}
	return t
}

// parseArgs turns k=v pairs into scan arguments: a value that is valid JSON
// (10, true, ["a"]) is taken as such, anything else as a string.
func parseArgs(pairs []string, jsonArgs string) (map[string]any, error) {
	args := map[string]any{}
	if jsonArgs != "" {
		if err := json.Unmarshal([]byte(jsonArgs), &args); err != nil {
			return nil, usagef("--args-json: not a JSON object: %v", err)
		}
	}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usagef("--arg %q: write name=value", p)
		}
		var x any
		if err := json.Unmarshal([]byte(v), &x); err == nil {
			args[k] = x
		} else {
			args[k] = v
		}
	}
	return args, nil
}

// resolveScan accepts a scan id or a scan name.
func resolveScan(ctx context.Context, c *client, ref string) (string, error) {
	if _, err := uuid.Parse(ref); err == nil {
		return ref, nil
	}
	scans, _, err := list[*scanfleet.Scan](ctx, c, "/api/v1/scans", url.Values{"limit": {"1000"}}, true)
	if err != nil {
		return "", err
	}
	for _, s := range scans {
		if s.Name == ref {
			return s.ID, nil
		}
	}
	return "", scanfleet.Errorf(scanfleet.ENOTFOUND, "no scan has the id or name %q", ref)
}

func (a *app) scanCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "scan", Aliases: []string{"scans"}, Short: "Port-scan targets, or manage and run scans"}
	a.addScanRun(cmd)

	var (
		name, typ, jsonArgs, cron, freq, timeout, site string
		argPairs, workspaces                           []string
		singleRun, disabled                            bool
		chunkSize                                      int64
	)
	create := &cobra.Command{
		Use:     "create",
		Short:   "Create a scan",
		Example: `  scanfleet scan create --name nightly --type noop --arg sleep=1s --arg records=10 --workspace acme --frequency 24h`,
		Args:    cobra.NoArgs,
	}
	co := addClientFlags(create)
	fs := create.Flags()
	fs.StringVar(&name, "name", "", "scan name (required, unique)")
	fs.StringVar(&typ, "type", "", "task type (see GET /api/v1/task-types)")
	fs.StringArrayVar(&argPairs, "arg", nil, "task argument name=value (repeat)")
	fs.StringVar(&jsonArgs, "args-json", "", "task arguments as a JSON object")
	fs.StringSliceVar(&workspaces, "workspace", nil, "workspace to scan (repeat or comma-separate)")
	fs.StringVar(&freq, "frequency", "", "run this often, e.g. 24h")
	fs.StringVar(&cron, "cron", "", "run on a cron schedule, e.g. \"0 3 * * *\"")
	fs.StringVar(&timeout, "timeout", "", "bound each task's run time, e.g. 30m")
	fs.StringVar(&site, "site", "", "run only on workers of this site")
	fs.Int64Var(&chunkSize, "chunk-size", 0, "split each workspace's prefixes into tasks of this many addresses (256: /24s)")
	fs.BoolVar(&singleRun, "single-run", false, "run once, then disable")
	fs.BoolVar(&disabled, "disabled", false, "create the scan disabled")
	envHelp(fs)
	create.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := co.client()
		if err != nil {
			return err
		}
		args, err := parseArgs(argPairs, jsonArgs)
		if err != nil {
			return err
		}
		body := map[string]any{"name": name, "type": typ, "args": args, "workspaces": nonNil(workspaces),
			"frequency": freq, "cron": cron, "timeout": timeout, "site": site, "single_run": singleRun, "enabled": !disabled,
			"chunk_size": chunkSize}
		var s scanfleet.Scan
		if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/scans", body, &s); err != nil {
			return err
		}
		return printOne(a.stdout, co.output, &s, scanTable(&s))
	}

	var lws, ltype string
	lst := &cobra.Command{Use: "list", Short: "List scans", Args: cobra.NoArgs}
	lo := addClientFlags(lst)
	lp := addPageFlags(lst)
	lst.Flags().StringVar(&lws, "workspace", "", "only scans of this workspace")
	lst.Flags().StringVar(&ltype, "type", "", "only scans of this task type")
	envHelp(lst.Flags())
	lst.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := lo.client()
		if err != nil {
			return err
		}
		q := lp.values()
		if lws != "" {
			q.Set("workspace", lws)
		}
		if ltype != "" {
			q.Set("type", ltype)
		}
		return printList(cmd.Context(), a, c, "/api/v1/scans", q, lp, lo.output, scanTable)
	}

	get := &cobra.Command{Use: "get ID|NAME", Short: "Show a scan", Args: cobra.ExactArgs(1)}
	gopt := addClientFlags(get)
	envHelp(get.Flags())
	get.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := gopt.client()
		if err != nil {
			return err
		}
		id, err := resolveScan(cmd.Context(), c, args[0])
		if err != nil {
			return err
		}
		var s scanfleet.Scan
		if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/scans/"+id, nil, &s); err != nil {
			return err
		}
		return printOne(a.stdout, gopt.output, &s, scanTable(&s))
	}

	var enable, disable bool
	update := &cobra.Command{Use: "update ID|NAME", Short: "Change a scan", Args: cobra.ExactArgs(1)}
	uo := addClientFlags(update)
	ufs := update.Flags()
	ufs.StringVar(&name, "name", "", "new name")
	ufs.StringArrayVar(&argPairs, "arg", nil, "replace the arguments with these name=value pairs")
	ufs.StringVar(&jsonArgs, "args-json", "", "replace the arguments with this JSON object")
	ufs.StringSliceVar(&workspaces, "workspace", nil, "replace the workspaces")
	ufs.StringVar(&freq, "frequency", "", "new frequency (\"\" for none)")
	ufs.StringVar(&cron, "cron", "", "new cron schedule (\"\" for none)")
	ufs.StringVar(&timeout, "timeout", "", "new task timeout")
	ufs.BoolVar(&enable, "enable", false, "enable the scan")
	ufs.BoolVar(&disable, "disable", false, "disable the scan")
	envHelp(ufs)
	update.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := uo.client()
		if err != nil {
			return err
		}
		id, err := resolveScan(cmd.Context(), c, args[0])
		if err != nil {
			return err
		}
		body := map[string]any{}
		for flag, key := range map[string]string{"name": "name", "frequency": "frequency", "cron": "cron", "timeout": "timeout"} {
			if ufs.Changed(flag) {
				v, _ := ufs.GetString(flag)
				body[key] = v
			}
		}
		if ufs.Changed("arg") || ufs.Changed("args-json") {
			if body["args"], err = parseArgs(argPairs, jsonArgs); err != nil {
				return err
			}
		}
		if ufs.Changed("workspace") {
			body["workspaces"] = workspaces
		}
		if enable && disable {
			return usagef("--enable and --disable contradict each other")
		} else if enable || disable {
			body["enabled"] = enable
		}
		if len(body) == 0 {
			return usagef("nothing to change")
		}
		var s scanfleet.Scan
		if err := c.do(cmd.Context(), http.MethodPatch, "/api/v1/scans/"+id, body, &s); err != nil {
			return err
		}
		return printOne(a.stdout, uo.output, &s, scanTable(&s))
	}

	del := &cobra.Command{Use: "delete ID|NAME", Short: "Delete a scan (its tasks stay)", Args: cobra.ExactArgs(1)}
	do := addClientFlags(del)
	envHelp(del.Flags())
	del.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := do.client()
		if err != nil {
			return err
		}
		id, err := resolveScan(cmd.Context(), c, args[0])
		if err != nil {
			return err
		}
		if err := c.do(cmd.Context(), http.MethodDelete, "/api/v1/scans/"+id, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "deleted scan %s\n", id)
		return nil
	}

	run := &cobra.Command{Use: "run ID|NAME", Short: "Run a scan now and print the tasks it created", Args: cobra.ExactArgs(1)}
	ro := addClientFlags(run)
	envHelp(run.Flags())
	run.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := ro.client()
		if err != nil {
			return err
		}
		id, err := resolveScan(cmd.Context(), c, args[0])
		if err != nil {
			return err
		}
		var res struct {
			Tasks    []*scanfleet.Task `json:"tasks"`
			InFlight bool              `json:"in_flight"`
		}
		if err := c.do(cmd.Context(), http.MethodPost, "/api/v1/scans/"+id+"/run", nil, &res); err != nil {
			return err
		}
		if res.InFlight && ro.output == "table" {
			fmt.Fprintln(a.stderr, "a run of this scan is in flight: not started again; its tasks:")
		}
		return taskTable(res.Tasks...).print(a.stdout, ro.output)
	}
	cmd.AddCommand(create, lst, get, update, del, run)
	return cmd
}
