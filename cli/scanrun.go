package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// scanRun holds the flags of "scanfleet scan TARGETS".
type scanRun struct {
	ports, workspace, rate, timeout, site string
	exclude, argPairs                     []string
	syn, wait, local, allowBroad          bool
	co                                    *clientOpts
}

// addScanRun makes "scanfleet scan TARGETS -p PORTS" the scan command's own
// action, beside its subcommands: it submits a port scan to a server, or
// with --local runs it in this process like naabu or nmap.
func (a *app) addScanRun(cmd *cobra.Command) {
	o := &scanRun{}
	cmd.Use = "scan [TARGETS...]"
	cmd.Long = `Port-scan TARGETS (addresses, CIDR prefixes, host names), or manage scans
with the subcommands below.

Without --local the scan is a task on the server, over targets inside the
workspace's scope (a target wholly out of scope is refused; excluded parts of
a prefix are never touched). --wait shows its progress and then its results.
With --local it runs in this process with no server; the targets are the
scope, minus --exclude.`
	cmd.Example = `  scanfleet scan 10.0.0.0/24 -p top-100 --workspace acme --wait
  scanfleet scan 127.0.0.1 -p 1-65535 --local -o jsonl
  sudo scanfleet scan 10.0.0.0/16 -p 80,443 --syn --rate 200000 --local`
	cmd.Args = cobra.ArbitraryArgs
	o.co = addClientFlags(cmd)
	fs := cmd.Flags()
	fs.StringVarP(&o.ports, "ports", "p", "top-1000", `ports: "22,80,8000-8100", top-100, top-1000 or all (1-65535)`)
	fs.BoolVar(&o.syn, "syn", false, "stateless SYN scan (needs raw sockets: root or CAP_NET_RAW; baremetal workers)")
	fs.BoolVar(&o.wait, "wait", false, "wait for the task, showing progress, then print its results")
	fs.BoolVar(&o.local, "local", false, "run the scan in this process, without a server")
	fs.StringVarP(&o.workspace, "workspace", "w", "", "workspace whose scope the targets must be in (server mode)")
	fs.StringVar(&o.rate, "rate", "", "packets or connection attempts per second (default: the scanner's)")
	fs.StringVar(&o.timeout, "timeout", "", "bound the whole scan, e.g. 10m")
	fs.StringVar(&o.site, "site", "", "run only on workers of this site (server mode)")
	fs.StringSliceVar(&o.exclude, "exclude", nil, "never touch these addresses, prefixes or names (--local)")
	fs.StringArrayVar(&o.argPairs, "arg", nil, "other scanner argument name=value (repeat)")
	fs.BoolVar(&o.allowBroad, "allow-broad", false, "allow prefixes wider than /8 (IPv4) or /16 (IPv6) with --local")
	envHelp(fs)
	cmd.RunE = func(cmd *cobra.Command, targets []string) error {
		if len(targets) == 0 {
			return cmd.Help()
		}
		if len(targets) == 1 && looksLikeCommand(targets[0]) {
			return usagef("unknown command or target %q for \"scanfleet scan\"; targets are addresses, prefixes or names with a dot (see --help)", targets[0])
		}
		if err := scanner.RefusePorts(targets); err != nil {
			return usagef("%s", scanfleet.ErrorMessage(err))
		}
		if o.local {
			return a.scanLocal(cmd.Context(), o, targets)
		}
		return a.scanRemote(cmd.Context(), o, targets)
	}
}

// looksLikeCommand reports whether a lone argument is more likely a
// mistyped subcommand than a target: one label, not an address.
func looksLikeCommand(s string) bool {
	return !strings.ContainsAny(s, ".:/") && s != "localhost"
}

func (o *scanRun) taskType() string {
	if o.syn {
		return "synscan"
	}
	return "portscan"
}

// args builds the scanner's arguments from the flags.
func (o *scanRun) args() (map[string]any, error) {
	args, err := parseArgs(o.argPairs, "")
	if err != nil {
		return nil, err
	}
	args["ports"] = o.ports
	if o.rate != "" {
		n, err := strconv.ParseInt(o.rate, 10, 64)
		if err != nil || n < 0 {
			return nil, usagef("--rate %q is not a number of packets per second", o.rate)
		}
		args["rate"] = n
	}
	return args, nil
}

func (a *app) scanRemote(ctx context.Context, o *scanRun, targets []string) error {
	c, err := o.co.client()
	if err != nil {
		return err
	}
	if o.workspace == "" {
		return usagef("--workspace is required: the targets must be in a workspace's scope (or pass --local)")
	}
	args, err := o.args()
	if err != nil {
		return err
	}
	body := map[string]any{"type": o.taskType(), "workspace": o.workspace, "targets": targets, "args": args, "site": o.site}
	if o.timeout != "" {
		body["timeout"] = o.timeout
	}
	var t scanfleet.Task
	if err := c.do(ctx, http.MethodPost, "/api/v1/tasks", body, &t); err != nil {
		return err
	}
	if !o.wait {
		tab := &table{headers: []string{"TASK", "TYPE", "WORKSPACE", "STATUS"}}
		tab.add(t, t.ID, t.Type, t.Workspace, string(t.Status))
		if err := printOne(a.stdout, o.co.output, t, tab); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "follow it with: scanfleet task logs %s --follow\n", t.ID)
		return nil
	}
	fmt.Fprintf(a.stderr, "task %s submitted\n", t.ID)
	bar := newProgressBar(a.stderr)
	for !t.Status.Terminal() {
		select {
		case <-ctx.Done():
			bar.done()
			fmt.Fprintf(a.stderr, "stopped waiting; the task goes on: scanfleet task cancel %s\n", t.ID)
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/tasks/"+t.ID, nil, &t); err != nil {
			return err
		}
		bar.update(string(t.Status), t.Progress.Done, t.Progress.Total)
	}
	bar.done()
	if t.Status != scanfleet.TaskFinished {
		return fmt.Errorf("task %s %s: %s", t.ID, t.Status, t.Error)
	}
	q := url.Values{"task": {t.ID}, "limit": {strconv.Itoa(scanfleet.MaxPageLimit)}}
	recs, _, err := list[json.RawMessage](ctx, c, "/api/v1/workspaces/"+url.PathEscape(t.Workspace)+"/records", q, true)
	if err != nil {
		return err
	}
	var results []map[string]any
	for _, raw := range recs {
		var m map[string]any
		if json.Unmarshal(raw, &m) == nil {
			results = append(results, m)
		}
	}
	return a.printScanResults(o.co.output, results, t.Output)
}

func (a *app) scanLocal(ctx context.Context, o *scanRun, targets []string) error {
	switch o.co.output {
	case "table", "json", "jsonl", "csv":
	default:
		return usagef("--output %q is not table, json, jsonl or csv", o.co.output)
	}
	var ex scanfleet.Executor
	for _, e := range executors() {
		if e.TaskType().Name == o.taskType() {
			ex = e
		}
	}
	if ex == nil {
		return fmt.Errorf("this build has no %s scanner", o.taskType())
	}
	args, err := o.args()
	if err != nil {
		return err
	}
	args, err = ex.TaskType().ValidateArgs(args)
	if err != nil {
		return usagef("%s", scanfleet.ErrorMessage(err))
	}
	scope := scanfleet.Scope{Include: targets, Exclude: o.exclude, AllowBroad: o.allowBroad}
	if scope, err = scope.Normalize(); err != nil {
		return usagef("%s", scanfleet.ErrorMessage(err))
	}
	in := &scanfleet.TaskInput{TaskID: "local", Type: o.taskType(), Workspace: "local", Args: args,
		Targets: targets, Exclude: o.exclude, Scope: &scope, Chunk: scanfleet.Chunk{N: 1, Of: 1}}
	if o.timeout != "" {
		d, err := time.ParseDuration(o.timeout)
		if err != nil || d <= 0 {
			return usagef("--timeout %q is not a duration such as 10m", o.timeout)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	bar := newProgressBar(a.stderr)
	var results []map[string]any
	stream := o.co.output == "jsonl"
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	env := &scanner.LocalEnv{
		OnRecord: func(r scanfleet.Record) error {
			if stream {
				return enc.Encode(r.Data) // results as they are found
			}
			results = append(results, r.Data)
			return nil
		},
		OnLog:      func(line string) { bar.log(line) },
		OnProgress: func(done, total int64) { bar.update("running", done, total) },
	}
	start := time.Now()
	err = ex.Run(ctx, in, env)
	bar.done()
	if err != nil {
		return fmt.Errorf("%s: %w", o.taskType(), err)
	}
	out, _ := json.Marshal(env.Results())
	fmt.Fprintf(a.stderr, "%s done in %s: %s\n", o.taskType(), time.Since(start).Round(time.Millisecond), summary(env.Results()))
	if stream {
		return nil
	}
	return a.printScanResults(o.co.output, results, out)
}

// summary renders a task's counts per status on one line.
func summary(res map[string]any) string {
	var parts []string
	for _, k := range []string{"open", "closed", "filtered", "timeout", "out-of-scope", "probes", "hosts_up"} {
		if v, ok := res[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %v", k, v))
		}
	}
	counts, ok := res["counts"].(map[string]any)
	if !ok {
		counts, ok = res["status"].(map[string]any)
	}
	if ok {
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s %v", k, counts[k]))
		}
	}
	if len(parts) == 0 {
		return "no counts reported"
	}
	return strings.Join(parts, ", ")
}

// printScanResults prints the services found (then any other records).
func (a *app) printScanResults(format string, results []map[string]any, output json.RawMessage) error {
	slices.SortStableFunc(results, func(x, y map[string]any) int {
		if c := strings.Compare(fmt.Sprint(x["kind"]), fmt.Sprint(y["kind"])); c != 0 {
			return -c // service before host
		}
		if c := compareAddr(fmt.Sprint(x["ip"]), fmt.Sprint(y["ip"])); c != 0 {
			return c
		}
		return int(num(x["port"]) - num(y["port"]))
	})
	t := &table{headers: []string{"KIND", "HOST", "PORT", "PROTO", "STATE", "SERVICE", "BANNER"}}
	for _, r := range results {
		port := ""
		if p := num(r["port"]); p > 0 {
			port = strconv.FormatInt(p, 10)
		}
		t.add(r, str(r["kind"]), str(r["ip"]), port, str(r["proto"]), str(r["state"]), str(r["name"]), clip(str(r["banner"]), 60))
	}
	if err := t.print(a.stdout, format); err != nil {
		return err
	}
	if format == "table" && len(results) == 0 {
		fmt.Fprintln(a.stderr, "nothing found")
	}
	_ = output
	return nil
}

func num(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case json.Number:
		n, _ := x.Int64()
		return n
	case int:
		return int64(x)
	case int64:
		return x
	}
	return 0
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// compareAddr orders addresses numerically where both parse.
func compareAddr(a, b string) int {
	pa, ea := parseAddr(a)
	pb, eb := parseAddr(b)
	if ea == nil && eb == nil {
		return pa.Compare(pb)
	}
	return strings.Compare(a, b)
}

// isTerminal reports whether w is a terminal, for the progress bar.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
