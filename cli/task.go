package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/scanfleet/scanfleet"
)

func taskTable(items ...*scanfleet.Task) *table {
	t := &table{headers: []string{"ID", "TYPE", "WORKSPACE", "STATUS", "ATTEMPTS", "WORKER", "CREATED", "ERROR"}}
	for _, k := range items {
		t.add(k, k.ID, k.Type, k.Workspace, string(k.Status), fmt.Sprintf("%d/%d", k.Attempts, k.MaxAttempts),
			orDash(k.WorkerID), fmtTime(&k.CreatedAt), orDash(k.Error))
	}
	return t
}

func (a *app) taskCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "task", Aliases: []string{"tasks"}, Short: "Inspect tasks"}

	var status []string
	var scan, ws, since, until string
	lst := &cobra.Command{Use: "list", Short: "List tasks, newest first", Args: cobra.NoArgs}
	lo := addClientFlags(lst)
	lp := addPageFlags(lst)
	lst.Flags().StringSliceVar(&status, "status", nil, "only these statuses (created, queued, requested, started, finished, failed, cancelled)")
	lst.Flags().StringVar(&scan, "scan", "", "only tasks of this scan id")
	lst.Flags().StringVar(&ws, "workspace", "", "only tasks of this workspace")
	lst.Flags().StringVar(&since, "since", "", "only tasks created at or after this RFC 3339 time")
	lst.Flags().StringVar(&until, "until", "", "only tasks created before this RFC 3339 time")
	envHelp(lst.Flags())
	lst.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := lo.client()
		if err != nil {
			return err
		}
		q := lp.values()
		for k, v := range map[string]string{"status": strings.Join(status, ","), "scan": scan, "workspace": ws, "since": since, "until": until} {
			if v != "" {
				q.Set(k, v)
			}
		}
		return printList(cmd.Context(), a, c, "/api/v1/tasks", q, lp, lo.output, taskTable)
	}

	get := &cobra.Command{Use: "get ID", Short: "Show a task", Args: cobra.ExactArgs(1)}
	gopt := addClientFlags(get)
	envHelp(get.Flags())
	get.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := gopt.client()
		if err != nil {
			return err
		}
		var t scanfleet.Task
		if err := c.do(cmd.Context(), http.MethodGet, "/api/v1/tasks/"+url.PathEscape(args[0]), nil, &t); err != nil {
			return err
		}
		return printOne(a.stdout, gopt.output, &t, taskTable(&t))
	}

	logs := &cobra.Command{Use: "logs ID", Short: "Print a task's log", Args: cobra.ExactArgs(1)}
	lgo := addClientFlags(logs)
	envHelp(logs.Flags())
	logs.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := lgo.client()
		if err != nil {
			return err
		}
		after := int64(0)
		for {
			var page struct {
				Items     []scanfleet.TaskLog `json:"items"`
				NextAfter int64               `json:"next_after"`
			}
			path := fmt.Sprintf("/api/v1/tasks/%s/logs?limit=1000&after=%d", url.PathEscape(args[0]), after)
			if err := c.do(cmd.Context(), http.MethodGet, path, nil, &page); err != nil {
				return err
			}
			for _, l := range page.Items {
				if lgo.output == "table" {
					fmt.Fprintf(a.stdout, "%s  %s\n", l.Time.Local().Format("15:04:05.000"), l.Line)
				} else if err := printOne(a.stdout, "jsonl", l, nil); err != nil {
					return err
				}
			}
			if len(page.Items) == 0 {
				return nil
			}
			after = page.NextAfter
		}
	}
	cmd.AddCommand(lst, get, logs)
	return cmd
}
